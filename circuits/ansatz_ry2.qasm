// Two-qubit hardware-efficient ansatz with 4 parameters (no measurements):
// for the estimator. Bind theta[0..3] in the order of the input declarations.
OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta0;
input float[64] theta1;
input float[64] theta2;
input float[64] theta3;
qubit[2] q;
ry(theta0) q[0];
ry(theta1) q[1];
cx q[0], q[1];
ry(theta2) q[0];
ry(theta3) q[1];
