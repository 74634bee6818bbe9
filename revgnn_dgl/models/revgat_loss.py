"""The losses of the released RevGAT recipe (ogbn-arxiv): log-cross-entropy and self-distillation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The official ``epsilon = 1 - ln 2`` of the log-cross-entropy.
LOG_CE_EPS = 1.0 - math.log(2.0)


def log_ce_loss(logits: Tensor, labels: Tensor, eps: float = LOG_CE_EPS) -> Tensor:
    r"""The official training loss :math:`\mathrm{mean}_i \big(\log(\epsilon + \mathrm{CE}_i) - \log \epsilon\big)`.

    A concave transform of the per-node cross-entropy :math:`\mathrm{CE}_i` (zero where
    :math:`\mathrm{CE}_i = 0`), which damps the gradient of badly-fit nodes.

    Parameters
    ----------
    logits : Tensor
        ``(N, C)`` unnormalised scores.
    labels : Tensor
        ``(N,)`` or ``(N, 1)`` class ids.
    eps : float
        :math:`\epsilon`, by default :math:`1 - \ln 2`.

    Examples
    --------
    >>> import math, torch
    >>> loss = log_ce_loss(torch.zeros(1, 2), torch.tensor([0]))  # CE = ln 2
    >>> math.isclose(loss.item(), -math.log(1 - math.log(2)), rel_tol=1e-6)
    True
    """
    ce = F.cross_entropy(logits, labels.reshape(-1).long(), reduction="none")
    return torch.mean(torch.log(eps + ce) - math.log(eps))


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    r"""The official self-distillation term, :math:`T^2 \cdot \mathrm{KLDivLoss}(\log p_s, p_t)`.

    With :math:`p_s = \mathrm{softmax}(z_s / T)` and :math:`p_t = \mathrm{softmax}(z_t / T)`
    row-wise, this is

    .. math::
        T^2 \cdot \frac{1}{N C} \sum_{i, c} p_{t,ic} \big(\log p_{t,ic} - \log p_{s,ic}\big),

    i.e. the divergence of the student from the teacher, :math:`\mathrm{KL}(p_t \Vert p_s)`,
    averaged over **all** :math:`N \cdot C` entries: the official code calls
    ``nn.KLDivLoss()`` with its default ``'mean'`` reduction (PyTorch 2.2), which divides the
    summed divergence by :math:`C` as well as :math:`N`. Kept as released so that the released
    ``alpha``/``temp`` mean what they meant there.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor
        ``(N, C)`` scores of the student being trained and of the fixed teacher.
    temperature : float
        :math:`T`.

    Examples
    --------
    >>> z = torch.randn(4, 3)
    >>> kd_loss(z, z, 0.7).abs().item() < 1e-7
    True
    """
    t = temperature
    log_student = F.log_softmax(student_logits / t, dim=-1)
    teacher = F.softmax(teacher_logits.detach() / t, dim=-1)
    # Written out rather than F.kl_div(reduction="mean"), which warns on every call and whose
    # 'mean' PyTorch plans to change to 'batchmean'; xlogy gives 0 log 0 = 0 as kl_div does.
    divergence = torch.special.xlogy(teacher, teacher) - teacher * log_student
    return divergence.mean() * (t * t)


def self_kd_loss(
    logits: Tensor,
    labels: Tensor,
    idx: Tensor,
    teacher_logits: Tensor,
    alpha: float,
    temperature: float,
) -> Tensor:
    r"""The student's loss: :math:`(1 - \alpha)\, \text{log-CE on } idx + \alpha\, \text{KD on every node}`.

    As the official ``--mode student`` (``--alpha 0.95 --temp 0.7`` in the release): the
    supervised term uses the nodes ``idx`` (the training nodes whose label was not fed as
    input), the distillation term every node's prediction.

    Parameters
    ----------
    logits : Tensor
        ``(N, C)`` student scores for all nodes.
    labels : Tensor
        ``(N,)`` or ``(N, 1)`` class ids.
    idx : Tensor
        Nodes of the supervised term.
    teacher_logits : Tensor
        ``(N, C)`` the teacher's scores (its best-validation predictions).
    alpha, temperature : float
        Weight of the distillation term, and :math:`T`.
    """
    labels = labels.reshape(-1)
    return (1.0 - alpha) * log_ce_loss(logits[idx], labels[idx]) + alpha * kd_loss(logits, teacher_logits, temperature)
