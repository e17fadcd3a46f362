import numpy as np
import pytest
import torch

from classic_msa.data import collate
from classic_msa.model import build_model
from classic_msa.models.mdf import MDF, MDFConfig, pairwise_orthogonality, target_weights, weight_loss
from classic_msa.seeding import seed_everything
from classic_msa.trainer import TrainConfig, Trainer

from .conftest import TINY_MDF


def test_target_weights_sum_to_one_and_favour_the_lower_error():
    errors = torch.tensor([[0.2, 1.0, 2.0], [1.5, 0.1, 0.7], [0.5, 0.5, 0.5]])
    w_star = target_weights(errors, eps=0.1)
    torch.testing.assert_close(w_star.sum(-1), torch.ones(3))
    assert w_star[0].argmax() == 0 and w_star[1].argmax() == 1
    assert w_star[0, 0] > w_star[0, 1] > w_star[0, 2]            # monotone in the error
    torch.testing.assert_close(w_star[2], torch.full((3,), 1 / 3))
    assert weight_loss(w_star, w_star).item() == pytest.approx(0.0, abs=1e-6)
    assert weight_loss(torch.full((3, 3), 1 / 3), w_star).item() > 0


def test_orthogonality_term_is_zero_for_orthogonal_representations():
    text = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    sound = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.0])
    vision = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, -2.0])
    orthogonal = torch.stack([text, sound, vision])[None].repeat(4, 1, 1)
    assert pairwise_orthogonality(orthogonal).item() == pytest.approx(0.0, abs=1e-10)
    correlated = torch.stack([text, text + 0.5 * sound, vision])[None]
    assert pairwise_orthogonality(correlated).item() > 0.1


def test_forward_decomposes_audio_and_fuses_by_the_generated_weights(synthetic):
    seed_everything(0)
    model = build_model("mdf", TINY_MDF).eval()
    batch = collate(synthetic["train"][:6])
    with torch.no_grad():
        out = model.represent(batch)
        mapped_audio = model.audio_mapper(model.audio_encoder(model.audio_norm(batch.features["audio"]),
                                                              batch.lengths["audio"]))
        fused = (out.weights[..., None] * out.representations).sum(1)
        terms = model(batch)
    torch.testing.assert_close(out.representations[:, 1] + out.extracted, mapped_audio)   # sound = audio - textual part
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(6))
    torch.testing.assert_close(out.pred, model.predictor(fused).squeeze(-1))
    assert set(terms) == {"pred", "task", "unimodal", "align", "orth", "weight"}
    assert all(terms[k].dim() == 0 and torch.isfinite(terms[k]) for k in terms if k != "pred")


def test_default_parameter_count():
    model = MDF(MDFConfig())
    print(f"MDF parameters at default config: {model.n_params():,}; per group:",
          {k: sum(p.numel() for p in v) for k, v in model.parameter_groups().items()})
    assert model.n_params() == sum(p.numel() for p in model.parameters())
    assert "text_encoder" not in model.parameter_groups()    # precomputed text features by default


def test_short_training_run_learns(synthetic):
    seed_everything(0)
    model = build_model("mdf", TINY_MDF)
    print(f"MDF parameters at the test config: {model.n_params():,}")
    config = TrainConfig.from_dict({"lr": 5e-3, "batch_size": 16, "patience": 0, "seed": 0,
                                    "stages": [{"epochs": 10}]})
    result = Trainer(model, config, dataset="mosi").fit(synthetic["train"], synthetic["valid"])
    history = [r["train"] for r in result.history]
    train_mean = np.mean([s.label for s in synthetic["train"]])
    mean_mae = float(np.mean([abs(s.label - train_mean) for s in synthetic["valid"]]))
    print("train task loss per epoch:", [round(h["task"], 3) for h in history])
    print("train total loss per epoch:", [round(h["total"], 3) for h in history])
    print(f"valid MAE {result.valid_metrics['mae']:.3f} vs mean predictor {mean_mae:.3f}")
    assert history[-1]["task"] < 0.5 * history[0]["task"]
    assert history[-1]["unimodal"] < history[0]["unimodal"]
    # The alignment term starts at ~0 (an untrained predictor is constant on every input), so
    # the total first rises while text predictions spread out, then falls as audio learns.
    assert history[-1]["total"] < 0.7 * max(h["total"] for h in history)
    assert result.valid_metrics["mae"] <= 0.85 * mean_mae


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=1100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("finetune", [False, True])
def test_wrapped_text_encoder_reads_masked_ids(synthetic, tiny_bert, finetune):
    from omni_msa.data.missing import MissingnessProtocol

    seed_everything(0)
    model = build_model("mdf", {**TINY_MDF, "text_encoder_path": str(tiny_bert), "finetune_text_encoder": finetune})
    assert model.pooling == "cls" and "text_encoder" in model.parameter_groups()
    samples = synthetic["train"][:4]
    model.eval()
    with torch.no_grad():
        complete = model.text_representation(collate(samples))
        masked = model.text_representation(collate(samples, MissingnessProtocol(intra_rate=0.6, seed=1)))
    assert not torch.allclose(complete, masked)        # [UNK] ids change the [CLS] state
    model.train()
    model(collate(samples))["task"].backward()
    encoder_grads = [p.grad for p in model.text_encoder.parameters()]
    assert all(g is None for g in encoder_grads) != finetune
    assert model.text_pooler[1].weight.grad is not None
