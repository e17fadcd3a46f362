import math

import pytest
import torch

from classic_msa.blocks import (
    MINE,
    CrossModalAttention,
    InfoNCE,
    JSDMutualInformation,
    PrependTokenEncoder,
    difference_loss,
    orthogonality_loss,
    padding_mask,
    soft_dtw,
)


def _reference_soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma: float) -> float:
    n, m = len(x), len(y)
    cost = ((x[:, None] - y[None]) ** 2).sum(-1).tolist()
    r = [[math.inf] * (m + 1) for _ in range(n + 1)]
    r[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = [r[i - 1][j - 1], r[i - 1][j], r[i][j - 1]]
            low = min(prev)
            softmin = low - gamma * math.log(sum(math.exp(-(p - low) / gamma) for p in prev))
            r[i][j] = cost[i - 1][j - 1] + softmin
    return r[n][m]


# --- soft-DTW ----------------------------------------------------------------------------------

def test_soft_dtw_matches_the_quadratic_reference():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 7, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    values = soft_dtw(x, y, gamma=0.5)
    for b in range(2):
        assert values[b].item() == pytest.approx(_reference_soft_dtw(x[b], y[b], 0.5), rel=1e-5)


def test_soft_dtw_self_is_below_shifted_copy_and_gradients_flow():
    t = torch.linspace(0, 4 * math.pi, 40)
    x = torch.stack([torch.sin(t), torch.cos(t)], dim=-1).requires_grad_(True)
    shifted = torch.roll(x.detach(), shifts=5, dims=0)
    same = soft_dtw(x, x.detach(), gamma=0.1)
    other = soft_dtw(x, shifted, gamma=0.1)
    assert same.item() < other.item()
    other.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_soft_dtw_lengths_ignore_padding():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 2, generator=gen), torch.randn(4, 2, generator=gen)
    padded_x = torch.cat([x, torch.full((3, 2), 9.0)])[None]
    padded_y = torch.cat([y, torch.full((2, 2), -9.0)])[None]
    value = soft_dtw(padded_x, padded_y, gamma=1.0, x_lengths=torch.tensor([6]), y_lengths=torch.tensor([4]))
    assert value[0].item() == pytest.approx(soft_dtw(x, y, gamma=1.0).item(), rel=1e-6)


def test_soft_dtw_small_gamma_approaches_exact_dtw_and_stays_finite():
    x = torch.tensor([[0.0], [1.0], [2.0]], requires_grad=True)
    y = torch.tensor([[0.0], [0.0], [1.0], [2.0]])
    value = soft_dtw(x, y, gamma=1e-3)   # exact DTW aligns perfectly: 0
    value.backward()
    assert abs(value.item()) < 1e-2 and torch.isfinite(x.grad).all()


# --- orthogonality and difference losses -------------------------------------------------------

def test_orthogonality_loss_zero_for_orthogonal_and_positive_otherwise():
    a = torch.tensor([[1.0, -1.0, 0.0, 0.0], [2.0, 0.0, -2.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, -1.0], [0.0, 3.0, 0.0, -3.0]])
    assert orthogonality_loss(a, b).item() == pytest.approx(0.0, abs=1e-10)
    assert orthogonality_loss(a, a).item() == pytest.approx(1.0, rel=1e-3)   # correlation 1
    assert orthogonality_loss(a, a + 0.3 * b).item() > 0.1


def test_orthogonality_loss_on_sequences():
    a = torch.tensor([[[1.0, -1.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0, 1.0, -1.0]]])
    assert orthogonality_loss(a, b).item() == pytest.approx(0.0, abs=1e-10)
    assert orthogonality_loss(a, a).item() > 1.0


def test_difference_loss_zero_for_uncorrelated_columns_and_positive_for_copies():
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert difference_loss(a, b).item() == pytest.approx(0.0, abs=1e-10)
    gen = torch.Generator().manual_seed(0)
    x, noise = torch.randn(64, 8, generator=gen), torch.randn(64, 8, generator=gen)
    assert difference_loss(x, x).item() > 5 * difference_loss(x, noise).item() > 0


# --- mutual-information estimators -------------------------------------------------------------

def _pairs(dependent: bool, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 4, generator=gen)
    y = x + 0.3 * torch.randn(n, 4, generator=gen) if dependent else torch.randn(n, 4, generator=gen)
    return x, y


def _fitted_estimate(make, dependent: bool, steps: int = 150) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    estimator = make()
    optimizer = torch.optim.Adam(estimator.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = _pairs(dependent, 128, gen)
        optimizer.zero_grad()
        estimator.loss(x, y).backward()
        optimizer.step()
    estimator.eval()
    with torch.no_grad():
        x, y = _pairs(dependent, 1024, gen)
        return float(estimator(x, y))


@pytest.mark.parametrize("make", [
    lambda: JSDMutualInformation(4, 4, hidden=32),
    lambda: MINE(4, 4, hidden=32),
    lambda: InfoNCE(4, 4, proj_dim=16, hidden=32),
], ids=["jsd", "mine", "infonce"])
def test_mi_estimators_rank_dependent_above_independent(make):
    dependent = _fitted_estimate(make, True)
    independent = _fitted_estimate(make, False)
    print(f"estimate: dependent {dependent:.3f}, independent {independent:.3f}")
    assert dependent > independent + 0.5


def test_mine_returns_dv_value_and_tracks_a_moving_average_in_training_only():
    torch.manual_seed(0)
    mine = MINE(2, 2, hidden=8, ema_decay=0.9)
    x, y = torch.randn(32, 2), torch.randn(32, 2)
    mine.eval()
    mine(x, y)
    assert torch.isnan(mine.log_ema)
    mine.train()
    mine(x, y)
    first = mine.log_ema.clone()
    assert torch.isfinite(first)
    mine(x, y)
    assert not torch.equal(first, mine.log_ema)


# --- attention blocks --------------------------------------------------------------------------

def test_prepend_encoder_masks_padding():
    torch.manual_seed(0)
    encoder = PrependTokenEncoder(5, 16, num_tokens=2, num_layers=2, num_heads=2, max_len=12).eval()
    x = torch.randn(3, 12, 5)
    lengths = torch.tensor([12, 7, 3])
    changed = x.clone()
    changed[1, 7:] = 100.0 * torch.randn(5, 5)
    changed[2, 3:] = -50.0
    tokens_a, seq_a = encoder(x, lengths)
    tokens_b, seq_b = encoder(changed, lengths)
    assert tokens_a.shape == (3, 2, 16) and seq_a.shape == (3, 12, 16)
    torch.testing.assert_close(tokens_a, tokens_b)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(seq_a[b, :n], seq_b[b, :n])
    assert not torch.allclose(seq_a[1, 7:], seq_b[1, 7:])


def test_prepend_encoder_zero_tokens_are_not_parameters_and_empty_rows_stay_finite():
    encoder = PrependTokenEncoder(4, 8, num_tokens=3, num_layers=1, num_heads=2, tokens="zero",
                                  positional="sinusoidal", max_len=6).eval()
    assert all("tokens" not in name for name, _ in encoder.named_parameters())
    tokens, seq = encoder(torch.randn(2, 6, 4), torch.tensor([0, 6]))
    assert torch.isfinite(tokens).all() and torch.isfinite(seq).all()
    assert not torch.allclose(tokens[:, 0], tokens[:, 1])   # positions tell the tokens apart


def test_cross_modal_attention_masks_context_padding_and_stacks():
    torch.manual_seed(0)
    block = CrossModalAttention(8, num_layers=2, num_heads=2).eval()
    query, context = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 2])
    changed = context.clone()
    changed[1, 2:] = 77.0
    out = block(query, context, lengths)
    assert out.shape == (2, 4, 8)
    torch.testing.assert_close(out, block(query, changed, lengths))
    assert not torch.allclose(out, block(query, changed))
    empty = block(query, context, torch.tensor([0, 0]))
    assert torch.isfinite(empty).all()


def test_padding_mask_keeps_one_position_for_empty_rows():
    mask = padding_mask(torch.tensor([2, 0]), 3)
    assert mask.tolist() == [[False, False, True], [False, True, True]]
