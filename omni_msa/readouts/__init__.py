"""Readouts: how a score is read out of a backbone. One module per readout in this package, each
registering itself with `register_readout`; training, scoring, the comparison and the report
read a readout's entry (does it train, does it need answers collated, are its outputs parsed)
and never branch on its name. A new readout is one module here, or a `register_readout` call
in the user's code.
"""

from __future__ import annotations

from omni_msa.readouts.base import (
    Predictions,
    ReadoutContext,
    ReadoutEntry,
    ReadoutSettings,
    get_readout,
    readout_names,
    register_readout,
)

__all__ = ["Predictions", "ReadoutContext", "ReadoutEntry", "ReadoutSettings", "get_readout", "readout_names",
           "register_readout"]
