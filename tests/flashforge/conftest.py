"""FlashForge test settings: the `triton` marker (tests skipped when triton is not installed)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "triton: runs the Triton kernels (interpreter on CPU)")
