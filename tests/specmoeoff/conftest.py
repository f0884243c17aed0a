"""Tiny upcycled stores built from the shared tiny Llama (2 layers, 64 wide, 4 experts)."""
import pytest


def build_tiny_store(dense: str, out, noise: float, router: str = "random", store_dtype: str = "float32",
                     seed: int = 0):
    from specmoeoff.store import build_store
    from specmoeoff.upcycle import Upcycler

    up = Upcycler(num_experts=4, top_k=2, noise=noise, router=router, calib_tokens=4, random_state=seed).fit(dense)
    return build_store(dense, out, up, store_dtype=store_dtype)


@pytest.fixture(scope="session")
def tiny_store(tiny_llama, tmp_path_factory) -> str:
    """eps 0.1, k-means router, fp32 expert files."""
    return str(build_tiny_store(tiny_llama, tmp_path_factory.mktemp("store"), 0.1, router="kmeans"))


@pytest.fixture(scope="session")
def tiny_store_eps0(tiny_llama, tmp_path_factory) -> str:
    return str(build_tiny_store(tiny_llama, tmp_path_factory.mktemp("store0"), 0.0))


@pytest.fixture(scope="session")
def store_builder():
    """The tiny-store builder, for tests that need a store with other settings."""
    return build_tiny_store
