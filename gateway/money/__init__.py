"""Money: the price book, tenant budgets and counterfactual costs."""
