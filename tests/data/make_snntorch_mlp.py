"""How tests/data/snntorch_mlp.nir was made: a real snnTorch 1.0.0 export (nirtorch 2.6).

Not run by the tests (snnTorch is not a dependency). To regenerate, in a scratch folder:
    .venv/bin/pip install --no-deps --target /tmp/snnt snntorch nirtorch
    PYTHONPATH=/tmp/snnt .venv/bin/python tests/data/make_snntorch_mlp.py
snnTorch writes scalar LIF parameters, which nir 1.0.8's type inference rejects, so type
inference is switched off for the export (the file is otherwise what snnTorch writes).
"""

import os

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

DATA = os.path.dirname(os.path.abspath(__file__))
# snnTorch 1.0 + nir 1.0.8: its scalar LIF parameters fail nir's type check
nir.NIRGraph.infer_types = lambda self: None
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Linear(12, 16),
    snn.Leaky(beta=0.75, init_hidden=True, reset_mechanism="zero"),
    torch.nn.Linear(16, 4),
    snn.Leaky(beta=0.5, init_hidden=True, output=True, reset_mechanism="zero"),
)
with torch.no_grad():
    net[0].weight.mul_(3.0)
    net[2].weight.mul_(3.0)
g = export_to_nir(net, torch.zeros(1, 12))
nir.write(DATA + '/snntorch_mlp.nir', g, compression=None)
x = (torch.rand(6, 10, 12) < 0.4)
np.save(DATA + '/snntorch_mlp_inputs.npy', x.numpy().astype(np.int8))
