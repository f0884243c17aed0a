"""CUDA path: same forward on GPU as on CPU, and a GPU-trained checkpoint loads on CPU."""
import numpy as np
import pytest

from csgnn import data
from csgnn.experiment import GraphClassifier
from csgnn.inputs import ModelConfig, build_structures, to_data, label_map
from csgnn.features import FeatureSpec
from csgnn.training import TrainConfig


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["csgnn", "gin"])
def test_cuda_forward_matches_cpu_and_checkpoint_moves(model, tiny_jsonl, tmp_path):
    import torch
    from torch_geometric.loader import DataLoader

    gset = data.load(str(tiny_jsonl))
    cfg = ModelConfig(model=model, cycle_len=6, hidden=16, layers=2)
    structs, _ = build_structures(gset.graphs, cfg, workers=0)
    index, classes = label_map(gset.graphs)
    spec = FeatureSpec.fit(gset.graphs)
    batch = next(iter(DataLoader(to_data(gset.graphs, structs, spec, cfg, index), batch_size=64)))
    torch.manual_seed(0)
    net = cfg.build(spec.dim, len(classes)).eval()
    cpu = net(batch).detach()
    gpu = net.cuda()(batch.to("cuda")).detach().cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4, rtol=1e-4)
    est = GraphClassifier(cfg, TrainConfig(epochs=2, batch_size=8, device="cuda")).fit(gset, structs)
    est.save(tmp_path / "m.pt")
    back = GraphClassifier.load(tmp_path / "m.pt")
    np.testing.assert_allclose(back.predict_proba(gset, structs), est.predict_proba(gset, structs, device="cuda"),
                               atol=1e-4)
