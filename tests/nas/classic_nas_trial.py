"""An NNI classic-NAS trial script, written as for NNI v1.9; only the three imports marked below differ.

A tiny classifier on random data with two LayerChoices and an InputChoice. It trains a few steps per
epoch, reports intermediate results, then the final one, and (with --record) appends one JSON line
saying what it was given and which candidates actually ran.
"""

import argparse
import json
import logging
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

import raynas.nas.classic_nas as nni  # was: import nni
from raynas.nas import InputChoice, LayerChoice  # was: from nni.nas.pytorch.mutables import LayerChoice, InputChoice
from raynas.nas.classic_nas import get_and_apply_next_architecture  # was: from nni.nas.pytorch.classic_nas import ...

logger = logging.getLogger("tiny_classic_nas")


class Net(nn.Module):
    def __init__(self, width):
        super(Net, self).__init__()
        self.stem = nn.Linear(8, width)
        self.op = LayerChoice(
            OrderedDict(
                [
                    ("relu_fc", nn.Sequential(nn.Linear(width, width), nn.ReLU())),
                    ("tanh", nn.Tanh()),
                    ("identity", nn.Identity()),
                ]
            ),
            key="op",
        )
        self.op2 = LayerChoice(
            [nn.Linear(width, width), nn.Sequential(nn.Linear(width, width), nn.Sigmoid())], key="op2"
        )
        self.skip = InputChoice(n_candidates=2, n_chosen=1, key="skip")
        self.head = nn.Linear(width, 3)
        self.skip_taken = []

    def forward(self, x):
        s = F.relu(self.stem(x))
        out = self.op2(self.op(s))
        candidates = [torch.zeros_like(s), s]
        skip = self.skip(candidates)
        self.skip_taken = [i for i, c in enumerate(candidates) if torch.equal(skip, c)]
        return self.head(out + skip)


def main(args):
    torch.manual_seed(args["seed"])
    x = torch.randn(96, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

    model = Net(args["width"])
    get_and_apply_next_architecture(model)

    ran = set()
    for key, layer_choice in (("op", model.op), ("op2", model.op2)):
        for index, candidate in enumerate(layer_choice):
            candidate.register_forward_hook(lambda m, i, o, name="%s.%d" % (key, index): ran.add(name))
    optimizer = torch.optim.SGD(model.parameters(), lr=args["lr"], momentum=0.5)

    for epoch in range(1, args["epochs"] + 1):
        model.train()
        for _step in range(args["steps"]):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x).argmax(1) == y).float().mean().item()
        if epoch < args["epochs"]:
            nni.report_intermediate_result(accuracy)
            logger.debug("accuracy %g", accuracy)
        else:
            nni.report_final_result(accuracy)

    if args["record"]:
        with open(args["record"], "a") as f:
            line = {
                "trial_id": nni.get_trial_id(),
                "sequence": nni.get_sequence_id(),
                "parameters": nni.get_current_parameter(),
                "ran": sorted(ran),
                "skip_taken": model.skip_taken,
                "final": accuracy,
            }
            f.write(json.dumps(line) + "\n")


def get_params():
    parser = argparse.ArgumentParser(description="tiny classic NAS trial")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", type=str, default="")
    args, _ = parser.parse_known_args()
    return args


if __name__ == "__main__":
    try:
        params = vars(get_params())
        main(params)
    except Exception as exception:
        logger.exception(exception)
        raise
