"""CPU stage: a global Rydberg pulse on a 2x2 square of atoms, as a QRMI Pulser payload."""

import json

from pulser import Pulse, Register, Sequence
from pulser.devices import DigitalAnalogDevice

register = Register.square(2, spacing=6.0, prefix="q")
sequence = Sequence(register, DigitalAnalogDevice)
sequence.declare_channel("rydberg", "rydberg_global")
sequence.add(Pulse.ConstantPulse(snakemake.params.duration, 2.0, 0.0, 0.0), "rydberg")
sequence.measure("ground-rydberg")
with open(snakemake.output[0], "w") as handle:
    json.dump({"sequence": sequence.to_abstract_repr(), "job_runs": snakemake.params.shots}, handle)
