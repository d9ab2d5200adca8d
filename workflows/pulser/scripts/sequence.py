"""CPU stage: the Pulser sequence for one final detuning, as a QRMI Pulser payload.

A chain of atoms under a global Rydberg pulse: the Rabi frequency ramps up and down
while the detuning sweeps from far below resonance to the final value. Atoms closer
than the blockade radius cannot both be excited, so a large final detuning leaves
the chain in the antiferromagnetic crystal (101 for three atoms).
"""
# ruff: noqa: F821  (Snakemake gives scripts the `snakemake` object)

import json

from pulser import Pulse, Register, Sequence
from pulser.devices import DigitalAnalogDevice
from pulser.waveforms import InterpolatedWaveform

p = snakemake.params
register = Register.rectangle(1, p.atoms, spacing=p.spacing, prefix="q")
sequence = Sequence(register, DigitalAnalogDevice)
sequence.declare_channel("ising", "rydberg_global")
amplitude = InterpolatedWaveform(p.duration, [1e-9, p.omega, p.omega, 1e-9])
detuning = InterpolatedWaveform(p.duration, [p.initial_detuning, p.initial_detuning, p.delta, p.delta])
sequence.add(Pulse(amplitude, detuning, 0.0), "ising")
sequence.measure("ground-rydberg")
with open(snakemake.output[0], "w") as handle:
    # As QRMI's Pulser example writes it: the abstract representation as a JSON string.
    json.dump({"sequence": sequence.to_abstract_repr(), "job_runs": p.shots}, handle)
