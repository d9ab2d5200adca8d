// 5-qubit GHZ state: expect only 00000 and 11111, about half each.
OPENQASM 3.0;
include "stdgates.inc";
qubit[5] q;
bit[5] meas;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
cx q[2], q[3];
cx q[3], q[4];
meas = measure q;
