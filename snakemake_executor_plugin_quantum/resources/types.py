"""Resource type names (no imports: the per-job client reads these)."""

# Our own simulator types; QRMI has no local simulator type.
AER = "qiskit-aer"
PULSER = "pulser-emulator"
VQPU = "vqpu"
LOCAL_TYPES = (AER, PULSER, VQPU)

# Types served by the real ``qrmi`` package, with the legacy names QRMI still accepts.
QRMI_TYPES = (
    "ibm-quantum-system",
    "ibm-quantum-compute-service",
    "pasqal-cloud",
    "pasqal-local",
    "alice-bob-felis",
    "iqm-server",
    "oqtopus",
    "direct-access",
    "qiskit-runtime-service",
)
KNOWN_TYPES = LOCAL_TYPES + QRMI_TYPES
