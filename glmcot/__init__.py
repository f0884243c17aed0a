"""GLM (arXiv:2511.01633) and its baseline Graph-CoT (arXiv:2404.07103), side by side.

`graph` loads GRBench-layout graphs; `retriever` maps text to node ids; `executor` runs the
A-Agent's code in a capped sandbox; `graphcot` is the faithful ReAct baseline; `glm` the
multi-agent pipeline; `oracle` the teacher-forcing driver used for efficiency; `scoring` the
GRBench metrics; `commands` the `papersuite serve glm` CLI.
"""
