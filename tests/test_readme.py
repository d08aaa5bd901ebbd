"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run():
    blocks = _blocks()
    assert len(blocks) >= 2
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102


def test_readme_port_example_trains_and_exports():
    namespace: dict = {}
    exec(compile(_blocks()[0], str(README), "exec"), namespace)  # noqa: S102
    exported = namespace["mutator"].export()
    assert set(exported) == {"op", "skip"} and exported["op"] in ("0", "1")
