"""Fixtures for the engine tests: a tiny random-weight Llama folder (SmolLM2's tokenizer) and,
shared across the session, the real SmolLM2 engine and its transformers twin."""
from __future__ import annotations

import os

import pytest

from papersuite.testing import make_tiny_folder  # shared with every package's tests


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random Llama folder; PAPERSUITE_TEST_TINY_MODEL names a prepared one (GPU box)."""
    prepared = os.environ.get("PAPERSUITE_TEST_TINY_MODEL")
    if prepared:
        return prepared
    return str(make_tiny_folder(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def smol_engine():
    from papersuite.engine.engine import LLMEngine

    return LLMEngine("smollm2-135m-instruct", num_blocks=256, max_num_batched_tokens=256)


@pytest.fixture(scope="session")
def smol_hf():
    from papersuite.llm import TransformersGenerator

    return TransformersGenerator("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_factory():
    """`make_tiny_folder` as a fixture (test modules cannot import conftest by name)."""
    return make_tiny_folder
