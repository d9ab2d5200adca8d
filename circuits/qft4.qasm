// Prepare |0101> (decimal 5), apply a 4-qubit QFT then its inverse:
// expect 0101 with certainty (a round trip through the Fourier basis).
OPENQASM 3.0;
include "stdgates.inc";
qubit[4] q;
bit[4] c;
x q[0];
x q[2];
// QFT
h q[3];
cp(pi/2) q[2], q[3];
cp(pi/4) q[1], q[3];
cp(pi/8) q[0], q[3];
h q[2];
cp(pi/2) q[1], q[2];
cp(pi/4) q[0], q[2];
h q[1];
cp(pi/2) q[0], q[1];
h q[0];
// inverse QFT
h q[0];
cp(-pi/2) q[0], q[1];
h q[1];
cp(-pi/4) q[0], q[2];
cp(-pi/2) q[1], q[2];
h q[2];
cp(-pi/8) q[0], q[3];
cp(-pi/4) q[1], q[3];
cp(-pi/2) q[2], q[3];
h q[3];
c = measure q;
