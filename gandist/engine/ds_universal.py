"""``python -m gandist.engine.ds_universal ARGS``: DeepSpeed's ``ds_to_universal`` conversion
(same arguments) with every ``torch.load`` weights-only (see ``gandist.engine.safe_load``).

The conversion reads every rank's ZeRO files of a checkpoint that may come from anywhere;
DeepSpeed's own entry point would unpickle them in full.
"""

from __future__ import annotations

from deepspeed.checkpoint import ds_to_universal

from gandist.engine.safe_load import weights_only_loads

if __name__ == "__main__":
    with weights_only_loads():
        ds_to_universal.main(ds_to_universal.parse_arguments())
