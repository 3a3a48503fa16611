"""``fpscf train`` with the SCF made to fail for one training batch on one rank (for
test_training_distributed.py; run by torchrun, or alone as the single-process reference).

Environment: ``FAIL_RANK`` (the rank whose forward pass fails) and ``FAIL_CALL`` (which of that
rank's training forward passes, counted from 1 over the whole run). Arguments: those of ``fpscf train``.
"""

from __future__ import annotations

import os
import sys

import fpscf.training.epochs as epochs
from fpscf.scf.solver import SCFConvergenceError

_real_predict = epochs.predict
_calls = {"training": 0}


def _failing_predict(model, batch, options, losses, training=True):
    if training:
        _calls["training"] += 1
        if int(os.environ.get("RANK", "0")) == int(os.environ["FAIL_RANK"]) and _calls["training"] == int(os.environ["FAIL_CALL"]):
            raise SCFConvergenceError("SCF did not converge (planted by the test)", [1e-1, 1e-2])
    return _real_predict(model, batch, options, losses, training=training)


if __name__ == "__main__":
    epochs.predict = _failing_predict
    from fpscf.train import main

    sys.exit(main(sys.argv[1:]))
