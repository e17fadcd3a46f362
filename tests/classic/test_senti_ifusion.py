import numpy as np
import torch

from omni_msa.data.missing import MissingnessProtocol

from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.senti_ifusion import (
    ORDER,
    SentiIFusion,
    SentiIFusionConfig,
    cross_modal_term,
    dominant_modality,
    surrogate,
    word_rows,
)
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

TINY = {"dim": 16, "num_tokens": 4, "num_heads": 2, "ff_dim": 32, "mi_hidden": 16, "embed_layers": 1,
        "integrity_layers": 1, "dominant_layers": 1, "fusion_layers": 1, "predictor_layers": 1, "dropout": 0.0}
STAGE1_FROZEN = ["subspace", "fusion", "predictor"]


def test_surrogate_is_the_input_at_full_integrity_and_the_cross_modal_term_at_zero():
    torch.manual_seed(0)
    u, shared = torch.randn(5, 3, 4, 6), torch.randn(5, 3, 4, 6)
    integrity = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.2, 0.9]])
    sur = surrogate(u, integrity, shared)
    cross = cross_modal_term(shared)
    torch.testing.assert_close(cross[:, 0], (shared[:, 1] + shared[:, 2]) / 2)
    torch.testing.assert_close(cross[:, 2], (shared[:, 0] + shared[:, 1]) / 2)
    for b in range(5):
        for m in range(3):
            i = integrity[b, m]
            if i == 1:
                torch.testing.assert_close(sur[b, m], u[b, m])
            elif i == 0:
                torch.testing.assert_close(sur[b, m], cross[b, m])
            else:
                torch.testing.assert_close(sur[b, m], i * u[b, m] + (1 - i) * cross[b, m])


def test_dominant_modality_follows_batch_mean_integrity():
    base = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.2, 0.3], [0.2, 0.3, 0.1], [0.4, 0.4, 0.4]])
    for winner in range(3):
        integrity = base.clone()
        integrity[:, winner] = torch.tensor([0.05, 1.0, 1.0, 0.6])   # not the max in every row
        assert dominant_modality(integrity) == winner


def test_model_uses_the_dominant_modality_and_masked_words_only(synthetic):
    seed_everything(0)
    model = build_model("senti_ifusion", {**TINY, "surrogate_integrity": "true"}).eval()
    samples = synthetic["train"][:8]
    for kept in ORDER:        # drop the other two: the kept modality has the highest integrity
        batch = collate(samples, MissingnessProtocol(keep=frozenset({kept}), seed=0))
        with torch.no_grad():
            out = model.represent(batch)
        assert ORDER[out.dominant] == kept
    # word rows: [CLS] and [SEP] gone, words at the front in order
    batch = collate(samples)
    states = batch.features["text"]
    words, n_words = word_rows(states, batch.text_tokens)
    first = batch.text_tokens[0].nonzero().flatten()
    torch.testing.assert_close(words[0, : n_words[0]], states[0, first])
    assert not batch.text_tokens[:, 0].any()


def test_forward_returns_every_term(synthetic):
    seed_everything(0)
    model = build_model("senti_ifusion", TINY)
    batch = collate(synthetic["train"][:6], MissingnessProtocol(intra_rate=0.5, inter_rate=0.5, seed=3))
    terms = model(batch)
    assert set(terms) == {"pred", *model.default_loss_weights()}
    assert all(terms[k].dim() == 0 and torch.isfinite(terms[k]) for k in terms if k != "pred")
    assert terms["pred"].shape == (6,)
    with torch.no_grad():
        out = model.represent(batch)
    assert ((out.integrity > 0) & (out.integrity < 1)).all()


def test_default_parameter_count():
    model = SentiIFusion(SentiIFusionConfig())
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    print(f"Senti-iFusion parameters at default config: {model.n_params():,}; per group: {groups}")
    assert sum(groups.values()) == model.n_params()
    weights = model.default_loss_weights()
    assert weights["integrity"] == 0.9 and weights["similarity"] == 0.4 and weights["difference"] == 0.4
    assert [weights[k] for k in ("recon_mse", "recon_mi", "sem_mse", "sem_mi")] == [0.5, 0.4, 0.3, 0.2]


def test_stage_one_leaves_frozen_groups_unchanged(synthetic):
    seed_everything(0)
    model = build_model("senti_ifusion", TINY)
    before = {name: [p.detach().clone() for p in params] for name, params in model.parameter_groups().items()}
    config = TrainConfig.from_dict({
        "lr": 1e-3, "batch_size": 32, "patience": 0, "seed": 0,
        "train_protocol": {"intra_rate": "uniform", "inter_rate": 0.3},
        "stages": [{"name": "stage1", "epochs": 1, "frozen": STAGE1_FROZEN, "select_on_valid": False,
                    "losses": model.stage1_loss_weights()},
                   {"name": "stage2", "epochs": 0}]})
    Trainer(model, config, dataset="mosi").fit(synthetic["train"][:64], synthetic["valid"][:16])
    after = model.parameter_groups()
    for name, params in before.items():
        changed = any(not torch.equal(a, b) for a, b in zip(params, after[name]))
        assert changed == (name not in STAGE1_FROZEN), name


def test_short_training_run_learns(synthetic):
    seed_everything(0)
    model = build_model("senti_ifusion", TINY)
    print(f"Senti-iFusion parameters at the test config: {model.n_params():,}")
    config = TrainConfig.from_dict({
        "lr": 3e-3, "batch_size": 16, "patience": 0, "seed": 0,
        "stages": [{"name": "stage1", "epochs": 2, "frozen": STAGE1_FROZEN, "select_on_valid": False,
                    "losses": model.stage1_loss_weights()},
                   {"name": "stage2", "epochs": 8}]})
    result = Trainer(model, config, dataset="mosi").fit(synthetic["train"], synthetic["valid"])
    history = [r["train"] for r in result.history if r["stage"] == "stage2"]
    train_mean = np.mean([s.label for s in synthetic["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in synthetic["valid"]]))
    print("stage-2 train task loss per epoch:", [round(h["task"], 3) for h in history])
    print("stage-2 train total loss per epoch:", [round(h["total"], 3) for h in history])
    print(f"valid MAE {result.valid_metrics['mae']:.3f} vs mean predictor {mean_mae:.3f}")
    assert history[-1]["task"] < 0.7 * history[0]["task"]
    assert history[-1]["total"] < history[0]["total"]
    assert result.valid_metrics["mae"] <= 0.85 * mean_mae
