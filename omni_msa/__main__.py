"""`python -m omni_msa`, `accelerate launch -m omni_msa` and `torchrun -m omni_msa`: the `omni-msa` command."""

from omni_msa.cli import main

if __name__ == "__main__":
    main()
