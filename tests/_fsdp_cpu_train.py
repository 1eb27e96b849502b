"""``scripts/train.py`` under Accelerate's FSDP plugin on CPU/gloo (tests only).

Accelerate 1.15 turns ``ACCELERATE_USE_FSDP`` into FSDP only for accelerator back-ends (``AcceleratorState`` checks
``distributed_type in [MULTI_GPU, MULTI_NPU, ...]``); with ``ACCELERATE_USE_CPU=1`` the state is ``MULTI_CPU``, the
FSDP request is ignored and the model is wrapped in DDP. torch's FSDP2 (``fully_shard``) itself runs on a CPU device
mesh with gloo, so this launcher builds the CPU process group first and then presents it to ``AcceleratorState`` as
``MULTI_GPU``: from there on it is Accelerate's own FSDP2 code (plugin from the launch config, ``fully_shard``,
sharded/full state dicts in ``save_state``/``load_state``) on ``cpu`` devices.
"""

import sys

from accelerate.state import PartialState
from accelerate.utils import DistributedType

from hf_seq2seq.commands.train import train_main

if __name__ == "__main__":
    state = PartialState(cpu=True)
    if state.distributed_type != DistributedType.MULTI_CPU:
        sys.exit(f"_fsdp_cpu_train.py: expected a MULTI_CPU launch, got {state.distributed_type}")
    state.distributed_type = DistributedType.MULTI_GPU  # the FSDP branch of AcceleratorState.__init__
    sys.exit(train_main(prog="_fsdp_cpu_train.py"))
