"""One training run in a fresh process: `python -m chameleon.worker '{"workload":…,"run":…}'`.

`compare` and `capacity` use it so every method starts from the same clean process (allocator
state, RLIMIT_DATA). Prints the run document as JSON on stdout; exit 1 on an out-of-memory stop,
exit 2 on a bad budget.
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    threads = int(spec.get("threads") or 0)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    from chameleon.manager import BudgetError
    from papersuite.errors import UserError
    from chameleon.trainer import RunConfig, TrainingOOM, train
    from chameleon.workloads import WorkloadConfig

    if threads:
        torch.set_num_threads(threads)
    wl = dict(spec["workload"])
    if wl.get("seq_len_at") is not None:
        wl["seq_len_at"] = tuple(wl["seq_len_at"])
    try:
        doc = train(WorkloadConfig(**wl), RunConfig(**spec["run"]))
    except TrainingOOM as e:
        print(json.dumps({"error": "oom", "message": str(e)}))
        return 1
    except (BudgetError, UserError) as e:
        print(json.dumps({"error": "input", "message": str(e)}))
        return 2
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
