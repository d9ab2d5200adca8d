// Repeat until success that never succeeds: a reset qubit always measures 0, so the loop
// runs for as long as the simulator is let run it. For trying deadlines: qrun stops it.
OPENQASM 3.0;
include "stdgates.inc";
qubit[1] q;
bit[1] c;
reset q[0];
c[0] = measure q[0];
while (c[0] == false) {
  reset q[0];
  c[0] = measure q[0];
}
