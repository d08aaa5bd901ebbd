"""TensorBoard event files, the progress line, the per-epoch JSON files."""

from __future__ import annotations

import io
import json
import struct

from raynas.train import Callback, ProgressLine, train_supernet
from tests.train.conftest import FACTORY, small_config


def _event_tags(folder) -> dict[str, list[float]]:
    """Read tensorboardX event files (TFRecord framing) into ``{tag: [values]}``."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(value.simple_value)
    return tags


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, run):
        self.calls.append(("start", run.local, run.steps_per_epoch))

    def on_progress(self, run, progress):
        self.calls.append(("progress", progress.step))

    def on_checkpoint(self, run, path, epoch):
        self.calls.append(("checkpoint", epoch, path.name))

    def on_epoch_end(self, run, metrics):
        self.calls.append(("epoch", metrics.epoch))

    def on_train_end(self, run, result):
        self.calls.append(("end", result.epochs))


def test_tensorboard_progress_and_callbacks(tmp_path, small_data):
    stream = _Tty()
    recorder = _Recorder()
    config = small_config(epochs=2, tensorboard=True, log_every=10)
    train_supernet(
        FACTORY, small_data, config, out_dir=tmp_path, local=True, callbacks=[ProgressLine(stream=stream), recorder]
    )
    tags = _event_tags(tmp_path / "tensorboard")
    for tag in ("train/loss", "train/accuracy", "train/lr", "train/samples_per_s", "epoch/loss", "sampling/fallbacks"):
        assert tag in tags, tag
    assert len(tags["train/loss"]) == 4  # 2 epochs x 20 steps / log_every 10
    conv7 = tags["sampling/op0/conv7"]
    assert len(conv7) == 2 and all(v >= 0 for v in conv7)
    assert sum(tags[f"sampling/op2/{n}"][0] for n in ("conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity")) == 20
    text = stream.getvalue()
    assert "supernet epoch 1/2" in text and "step 10" in text and "loss" in text and "samples/s" in text
    assert text.endswith("\n")
    assert recorder.calls == [
        ("start", True, 20),
        ("progress", 10),
        ("progress", 20),
        ("checkpoint", 1, "last.pt"),
        ("epoch", 0),
        ("progress", 30),
        ("progress", 40),
        ("checkpoint", 2, "last.pt"),
        ("epoch", 1),
        ("end", 2),
    ]
    history = json.loads((tmp_path / "supernet_metrics.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    arch = json.loads((tmp_path / "architectures" / "epoch-0002.json").read_text())
    assert arch["epoch"] == 2 and set(arch["paths"][0]) == {"op0", "op1", "op2", "op3", "skip1", "skip2", "skip3"}
