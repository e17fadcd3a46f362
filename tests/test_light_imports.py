import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "opensmile", "librosa", "dlib",
         "mediapipe")


def test_shared_layer_imports_without_heavy_libraries():
    code = (
        "import sys, omni_msa.data, omni_msa.metrics, omni_msa.data.missing, omni_msa.data.mmsa, "
        "omni_msa.data.manifest, omni_msa.data.batching, omni_msa.data.synthetic, omni_msa.data.media; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "", f"heavy modules imported: {run.stdout.strip()}"
