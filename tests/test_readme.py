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
    from raynas.nas.utils import reset_global_mutable_counting

    reset_global_mutable_counting()  # as in a fresh script
    namespace: dict = {}
    exec(compile(_blocks()[0], str(README), "exec"), namespace)  # noqa: S102
    exported = namespace["mutator"].export()
    assert set(exported) == {"LayerChoice1", "InputChoice2"} and exported["LayerChoice1"] in ("0", "1")
    fixed = namespace["Net"]()  # NNI's keys and the module paths both name the choices
    from raynas.nas import apply_fixed_architecture

    assert apply_fixed_architecture(fixed, {"op": "1", "skip": []}).export() == {
        "LayerChoice3": "1", "InputChoice4": []}


def _yaml_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)


def test_readme_config_block_is_the_embedded_default():
    import yaml

    from raynas.experiment import ExperimentConfig, load_config

    documented = yaml.safe_load(_yaml_after("### Configuration"))
    assert documented == ExperimentConfig().to_dict() == load_config().to_dict()


def test_readme_cluster_launcher_file_parses():
    import yaml

    launcher = yaml.safe_load(_yaml_after("An example cluster launcher file"))
    assert {"cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands"} <= set(launcher)
    assert launcher["head_node_type"] in launcher["available_node_types"]
