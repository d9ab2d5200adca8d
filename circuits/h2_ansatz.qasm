// One-parameter ansatz for H2 in the 2-qubit parity-reduced basis:
// |psi(theta)> = cos(theta/2)|01> + sin(theta/2)|10>  (no measurements: for the estimator).
OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[2] q;
x q[0];
ry(theta) q[1];
cx q[1], q[0];
