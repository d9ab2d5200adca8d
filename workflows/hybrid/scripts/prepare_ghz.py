"""CPU stage: an n-qubit GHZ circuit as OpenQASM 3 (qrun takes the file as it is)."""

n = snakemake.params.n
lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', f"qubit[{n}] q;", f"bit[{n}] meas;", "h q[0];"]
lines += [f"cx q[{i}], q[{i + 1}];" for i in range(n - 1)]
lines.append("meas = measure q;")
with open(snakemake.output[0], "w") as handle:
    handle.write("\n".join(lines) + "\n")
