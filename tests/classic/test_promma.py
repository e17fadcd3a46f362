import numpy as np
import torch

from omni_msa.data.missing import MissingnessProtocol

from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.promma import (
    ORDER,
    STAGE2_GROUPS,
    MissingModalityEvaluator,
    ProMMA,
    ProMMAConfig,
    generation_pseudo_labels,
    mi_weights,
    private_prompts,
)
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

TINY = {"dim": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32, "num_prompts": 2, "prompt_rank": 2,
        "generator_hidden": 16, "evaluator_hidden": 16, "head_hidden": 16, "mi_hidden": 16, "dropout": 0.0}
STAGE1_FROZEN = list(STAGE2_GROUPS)


def _stages(model, stage1_epochs, stage2_epochs):
    return [{"name": "stage1", "epochs": stage1_epochs, "frozen": STAGE1_FROZEN, "select_on_valid": False,
             "losses": model.stage1_loss_weights()},
            {"name": "stage2", "epochs": stage2_epochs, "frozen": ["backbone"]}]


def test_private_prompts_differ_per_modality_and_derive_from_shared():
    seed_everything(0)
    model = build_model("promma", TINY)
    private = model.private().detach()
    assert private.shape == (3, 1, 2, 16)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(private[i], private[j])
    with torch.no_grad():
        model.shared_prompts.add_(torch.randn_like(model.shared_prompts))
    changed = model.private().detach()
    for i in range(3):
        assert not torch.allclose(changed[i], private[i])
    with torch.no_grad():
        model.shared_prompts.zero_()
    assert torch.equal(model.private(), torch.zeros_like(private))
    # the formula itself
    shared, down, up = torch.randn(2, 3, 4), torch.randn(4, 2), torch.randn(2, 4)
    torch.testing.assert_close(private_prompts(shared, down, up), shared + shared @ down @ up)


def test_pseudo_labels_say_whether_generation_lowered_the_error():
    labels = torch.tensor([1.0, -1.0, 0.0, 2.0])
    without = torch.tensor([0.0, -1.0, 0.5, 2.5])
    with_gen = torch.tensor([0.8, 0.0, -0.2, 1.0])
    assert generation_pseudo_labels(without, with_gen, labels).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_evaluator_decision_flips_with_the_present_mask_and_the_features():
    # Toy pseudo-labels: generating audio helps iff audio is missing and text feature 0 is positive.
    torch.manual_seed(0)
    evaluator = MissingModalityEvaluator(dim=4, hidden=32, dropout=0.0)
    optimizer = torch.optim.Adam(evaluator.parameters(), lr=1e-2)
    for _ in range(300):
        present = torch.rand(64, 3) < 0.5
        summaries = torch.randn(64, 3, 4)
        label = (~present[:, 1] & (summaries[:, 0, 0] > 0) & present[:, 0]).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(evaluator.logits(present, summaries)[:, 1], label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    summaries = torch.zeros(4, 3, 4)
    summaries[:, 0, 0] = torch.tensor([2.0, 2.0, -2.0, -2.0])
    present = torch.tensor([[True, False, True], [True, True, True], [True, False, True], [True, True, True]])
    with torch.no_grad():
        decision = evaluator(present, summaries)[:, 1] > 0.5
    assert decision.tolist() == [True, False, False, False]
    # the untrained model's evaluator also reacts to its inputs
    seed_everything(0)
    model = build_model("promma", TINY).eval()
    feats = torch.randn(2, 3, 16)
    with torch.no_grad():
        a = model.evaluator(torch.tensor([[True, True, False]] * 2), feats)
        b = model.evaluator(torch.tensor([[True, False, True]] * 2), feats)
        c = model.evaluator(torch.tensor([[True, True, False]] * 2), feats + 1.0)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    assert ((a > 0) & (a < 1)).all()


def test_forward_terms_mi_weights_and_decisions(synthetic):
    seed_everything(0)
    model = build_model("promma", TINY)
    batch = collate(synthetic["train"][:8], MissingnessProtocol(inter_rate=0.7, intra_rate=0.3, seed=2))
    terms = model(batch)
    assert set(terms) == {"pred", "backbone", *model.default_loss_weights()}
    assert all(terms[k].dim() == 0 and torch.isfinite(terms[k]) for k in terms if k != "pred")
    assert terms["pred"].shape == (8,)
    model.eval()
    with torch.no_grad():
        out = model.represent(batch)
    present = torch.stack([batch.present[m] for m in ORDER], dim=1)
    assert (~present).any()
    assert out.weights.shape == (8, 3) and (out.weights > 0).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(8))
    torch.testing.assert_close(mi_weights(torch.tensor([[0.0, 0.0, 0.0]])), torch.full((1, 3), 1 / 3))
    assert not (out.decisions & present).any()          # only missing modalities are generated
    model.config.decision_threshold = -1.0                # every missing modality generated
    with torch.no_grad():
        forced = model.represent(batch)
    assert torch.equal(forced.decisions, ~present)
    if not torch.equal(out.decisions, forced.decisions):   # generating more modalities changes the prediction
        assert not torch.allclose(forced.pred, out.pred)


def test_default_parameter_count():
    model = ProMMA(ProMMAConfig())
    groups = {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()}
    print(f"ProMMA parameters at default config: {model.n_params():,}; per group: {groups}")
    assert sum(groups.values()) == model.n_params()
    assert set(groups) == {"backbone", *STAGE2_GROUPS}


def test_stage_two_leaves_the_backbone_unchanged(synthetic):
    seed_everything(0)
    model = build_model("promma", TINY)
    snapshot = lambda: {n: [p.detach().clone() for p in ps] for n, ps in model.parameter_groups().items()}  # noqa: E731
    initial = snapshot()
    after_stage1 = {}
    config = TrainConfig.from_dict({"lr": 1e-3, "batch_size": 32, "patience": 0, "seed": 0,
                                    "train_protocol": {"inter_rate": 0.3, "intra_rate": 0.2},
                                    "stages": _stages(model, 1, 1)})

    def on_epoch_end(record):
        if record["stage"] == "stage1":
            after_stage1.update(snapshot())

    Trainer(model, config, dataset="mosi").fit(synthetic["train"][:64], synthetic["valid"][:16],
                                               on_epoch_end=on_epoch_end)
    final = model.parameter_groups()
    changed = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    for name in initial:
        assert changed(initial[name], after_stage1[name]) == (name == "backbone"), name
        assert changed(after_stage1[name], final[name]) == (name != "backbone"), name


def test_short_training_run_learns(synthetic):
    seed_everything(0)
    model = build_model("promma", TINY)
    print(f"ProMMA parameters at the test config: {model.n_params():,}")
    config = TrainConfig.from_dict({"lr": 3e-3, "batch_size": 16, "patience": 0, "seed": 0,
                                    "stages": _stages(model, 5, 4)})
    result = Trainer(model, config, dataset="mosi").fit(synthetic["train"], synthetic["valid"])
    stage1 = [r["train"] for r in result.history if r["stage"] == "stage1"]
    stage2 = [r["train"] for r in result.history if r["stage"] == "stage2"]
    train_mean = np.mean([s.label for s in synthetic["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in synthetic["valid"]]))
    print("stage-1 backbone loss per epoch:", [round(h["backbone"], 3) for h in stage1])
    print("stage-2 task / total loss per epoch:", [(round(h["task"], 3), round(h["total"], 3)) for h in stage2])
    print(f"valid MAE {result.valid_metrics['mae']:.3f} vs mean predictor {mean_mae:.3f}")
    assert stage1[-1]["backbone"] < 0.6 * stage1[0]["backbone"]
    assert stage2[-1]["total"] < stage2[0]["total"]
    assert stage2[-1]["task"] <= stage2[0]["task"]
    assert result.valid_metrics["mae"] <= 0.85 * mean_mae
