"""SpecMoEOff: speculative decoding to hide expert-offloading latency in MoE inference (arXiv 2508.21706).

A sparse-upcycled SmolLM2 stands in for the MoE target (no MoE weights ship offline); its experts
live in an emulated slow tier and are cached in a bounded fast tier; the dense SmolLM2 drafts.
"""
