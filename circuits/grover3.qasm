// Grover search over 3 qubits for the marked state 101, two iterations:
// expect 101 with probability about 0.945.
OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0]; h q[1]; h q[2];
// iteration 1: oracle marks 101 (q2=1, q1=0, q0=1)
x q[1];
h q[2]; ccx q[0], q[1], q[2]; h q[2];
x q[1];
// diffusion
h q[0]; h q[1]; h q[2];
x q[0]; x q[1]; x q[2];
h q[2]; ccx q[0], q[1], q[2]; h q[2];
x q[0]; x q[1]; x q[2];
h q[0]; h q[1]; h q[2];
// iteration 2
x q[1];
h q[2]; ccx q[0], q[1], q[2]; h q[2];
x q[1];
h q[0]; h q[1]; h q[2];
x q[0]; x q[1]; x q[2];
h q[2]; ccx q[0], q[1], q[2]; h q[2];
x q[0]; x q[1]; x q[2];
h q[0]; h q[1]; h q[2];
c = measure q;
