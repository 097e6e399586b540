"""DINO loss, centre and temperature schedule against loops, finite differences and PyTorch."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import backend, gradcheck
from refimpl.losses import dino


def _log_softmax_row(row):
    top = max(row)
    log_z = top + math.log(math.fsum(math.exp(v - top) for v in row))
    return [v - log_z for v in row]


def naive(student, teacher, center, student_temp, teacher_temp, n_global):
    """Caron et al. Eq. 3 with multi-crop, one (teacher crop, student crop, image) at a time."""
    b = len(teacher) // n_global
    n_crops = len(student) // b
    c = np.ravel(center)
    terms = []
    for g in range(n_global):
        for v in range(n_crops):
            if v == g:
                continue
            per_image = []
            for i in range(b):
                q = [math.exp(x) for x in _log_softmax_row(
                    [(t - ck) / teacher_temp for t, ck in zip(teacher[g * b + i], c)])]
                log_p = _log_softmax_row([s / student_temp for s in student[v * b + i]])
                per_image.append(-math.fsum(qk * lk for qk, lk in zip(q, log_p)))
            terms.append(math.fsum(per_image) / b)
    return math.fsum(terms) / len(terms)


@st.composite
def cases(draw):
    n_global = draw(st.integers(1, 3))
    n_crops = draw(st.integers(max(n_global, 2), n_global + 3))
    b, k = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return dict(student=gen.standard_normal((n_crops * b, k)),
                teacher=gen.standard_normal((n_global * b, k)),
                center=gen.standard_normal((1, k)) * 0.3 if draw(st.booleans()) else np.zeros(k),
                student_temp=draw(st.floats(0.05, 1.0)), teacher_temp=draw(st.floats(0.02, 1.0)),
                n_global=n_global)


@given(case=cases())
def test_equals_naive_loop(case):
    loss, _ = dino.forward(**case)
    np.testing.assert_allclose(loss, naive(**case), rtol=1e-12, atol=1e-12)


@given(case=cases())
def test_vjp_and_no_teacher_gradient(case):
    rest = {k: v for k, v in case.items() if k != "student"}
    gradcheck.check_vjp(lambda s: dino.forward(s, **rest), dino.backward, [case["student"]]).raise_if_failed()
    _, cache = dino.forward(**case)
    assert dino.backward(1.0, cache)[1:] == (None, None)


@given(case=cases(), shift=st.floats(-5.0, 5.0))
def test_invariances(case, shift):
    """Row shifts of either network's logits, a common shift of teacher and centre, and a
    permutation of the images (the same in every crop) leave the loss unchanged."""
    loss, _ = dino.forward(**case)
    gen = np.random.default_rng(0)
    student, teacher, center = case["student"], case["teacher"], case["center"]
    moved = dict(case, student=student + shift * gen.random((len(student), 1)),
                 teacher=teacher + shift * gen.random((len(teacher), 1)))
    np.testing.assert_allclose(dino.forward(**moved)[0], loss, rtol=1e-11, atol=1e-12)
    offset = shift * gen.standard_normal(teacher.shape[1])
    common = dict(case, teacher=teacher + offset, center=center + offset)
    np.testing.assert_allclose(dino.forward(**common)[0], loss, rtol=1e-11, atol=1e-12)
    b = len(teacher) // case["n_global"]
    perm = gen.permutation(b)
    crops = lambda x: np.concatenate([x[v * b:(v + 1) * b][perm] for v in range(len(x) // b)])  # noqa: E731
    permuted = dict(case, student=crops(student), teacher=crops(teacher))
    np.testing.assert_allclose(dino.forward(**permuted)[0], loss, rtol=1e-12, atol=1e-12)


@given(n_crops=st.integers(2, 5), b=st.integers(1, 3), k=st.integers(1, 6), temp=st.floats(0.05, 2.0),
       seed=st.integers(0, 2**32 - 1))
def test_identical_distributions_give_the_entropy(n_crops, b, k, temp, seed):
    """Every crop of an image with the same logits, centre 0, equal temperatures: L = mean_b H(q_b)."""
    x = np.random.default_rng(seed).standard_normal((b, k))
    loss, _ = dino.forward(np.tile(x, (n_crops, 1)), np.tile(x, (2, 1)), np.zeros(k),
                           student_temp=temp, teacher_temp=temp)
    q = np.exp(x / temp - np.log(np.exp(x / temp).sum(axis=1, keepdims=True)))
    entropy = -(q * np.log(q)).sum(axis=1).mean()
    np.testing.assert_allclose(loss, entropy, rtol=1e-12, atol=1e-14)


STUDENT = np.array([[0.2, -1.0, 0.5], [1.0, 0.3, -0.2], [0.0, 0.4, 0.1],
                    [-0.6, 0.8, 0.3], [0.9, -0.1, 0.0], [0.3, 0.3, -0.7]])  # 3 crops x B = 2
TEACHER = np.array([[0.5, 0.1, -0.3], [0.0, 1.2, 0.4], [-0.2, 0.6, 0.9], [1.1, -0.4, 0.2]])
CENTER = np.array([[0.1, -0.2, 0.05]])


def test_every_backend_full_check_and_purity(xpd):
    student, teacher, center = xpd.put(STUDENT), xpd.put(TEACHER), xpd.put(CENTER)
    forward = lambda s: dino.forward(s, teacher, center, student_temp=0.3, teacher_temp=0.1)  # noqa: E731
    report = gradcheck.check_gradients(forward, dino.backward, [student])
    assert report.ok, str(report)
    loss, cache = forward(student)
    np.testing.assert_allclose(backend.to_numpy(loss), naive(STUDENT, TEACHER, CENTER, 0.3, 0.1, 2),
                               rtol=1e-13)
    first, second = dino.backward(1.0, cache), dino.backward(xpd.put(np.array(1.0)), cache)
    assert first[1:] == (None, None)
    np.testing.assert_array_equal(backend.to_numpy(first[0]), backend.to_numpy(second[0]))
    new_center = dino.update_center(center, teacher, momentum=0.8)
    np.testing.assert_allclose(backend.to_numpy(new_center), 0.8 * CENTER + 0.2 * TEACHER.mean(axis=0),
                               rtol=1e-14)
    for got, want in ((student, STUDENT), (teacher, TEACHER), (center, CENTER)):
        np.testing.assert_array_equal(backend.to_numpy(got), want)


@pytest.mark.parametrize("n_global,n_crops", [(2, 2), (2, 6), (1, 3)])
def test_equals_torch(torch, n_global, n_crops):
    """An autograd formulation written from the description of the official DINOLoss."""
    functional = torch.nn.functional
    gen = np.random.default_rng(n_crops)
    b, k = 3, 7
    student, teacher = gen.standard_normal((n_crops * b, k)) * 2, gen.standard_normal((n_global * b, k))
    center = gen.standard_normal((1, k)) * 0.2
    s = torch.tensor(student, requires_grad=True)
    student_crops = (s / 0.1).chunk(n_crops)
    teacher_probs = functional.softmax((torch.tensor(teacher) - torch.tensor(center)) / 0.04, dim=-1)
    total, n_terms = 0.0, 0
    for g, q in enumerate(teacher_probs.detach().chunk(n_global)):
        for v, crop in enumerate(student_crops):
            if v != g:
                total = total + torch.sum(-q * functional.log_softmax(crop, dim=-1), dim=-1).mean()
                n_terms += 1
    want = total / n_terms
    want.backward()
    loss, cache = dino.forward(student, teacher, center, n_global=n_global)
    np.testing.assert_allclose(loss, want.item(), rtol=1e-10)
    np.testing.assert_allclose(dino.backward(1.0, cache)[0], s.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_update_center_is_the_ema_and_pure():
    center, teacher = np.array([1.0, -1.0]), np.array([[2.0, 0.0], [4.0, 2.0]])
    np.testing.assert_allclose(dino.update_center(center, teacher), [0.9 + 0.3, -0.9 + 0.1])
    np.testing.assert_array_equal(dino.update_center(center, teacher, momentum=1.0), center)
    np.testing.assert_array_equal(dino.update_center(center, teacher, momentum=0.0), [3.0, 1.0])
    assert dino.update_center(center[None, :], teacher).shape == (1, 2)
    np.testing.assert_array_equal(center, [1.0, -1.0])
    for momentum in (-0.1, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            dino.update_center(center, teacher, momentum=momentum)
    with pytest.raises(ValueError, match="center must have shape"):
        dino.update_center(np.zeros(3), teacher)


@pytest.mark.parametrize("warmup", [0, 1, 2, 5, 30])
def test_teacher_temperature_is_the_official_schedule(warmup):
    epochs = 40
    official = np.concatenate([np.linspace(0.04, 0.07, warmup), np.full(epochs - warmup, 0.07)])
    got = [dino.teacher_temperature(e, warmup) for e in range(epochs)]
    np.testing.assert_allclose(got, official, rtol=1e-15)


def test_teacher_temperature_bad_input():
    with pytest.raises(ValueError, match="epoch"):
        dino.teacher_temperature(-1, 5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        dino.teacher_temperature(0, -2)
    with pytest.raises(ValueError, match="start"):
        dino.teacher_temperature(0, 5, start=0.0)


def test_bad_input_raises_naming_the_argument():
    s, t, c = STUDENT, TEACHER, CENTER
    with pytest.raises(ValueError, match="teacher has 3 rows"):
        dino.forward(s, t[:3], c)
    with pytest.raises(ValueError, match="student has 5 rows"):
        dino.forward(s[:5], t, c)
    with pytest.raises(ValueError, match="student has 2 rows"):  # only one crop: no pair
        dino.forward(s[:2], t[:2], c, n_global=1)
    with pytest.raises(ValueError, match="student must have shape"):
        dino.forward(s[:, :2], t, c)
    with pytest.raises(ValueError, match="center must have shape"):
        dino.forward(s, t, np.zeros(2))
    with pytest.raises(ValueError, match="student must be finite"):
        dino.forward(np.where(s > 0.9, np.nan, s), t, c)
    with pytest.raises(ValueError, match="teacher must be finite"):
        dino.forward(s, np.where(t > 1.0, np.inf, t), c)
    for name in ("student_temp", "teacher_temp"):
        for bad in (0.0, -0.1):
            with pytest.raises(ValueError, match=name):
                dino.forward(s, t, c, **{name: bad})
    with pytest.raises(ValueError, match="n_global"):
        dino.forward(s, t, c, n_global=0)


def test_float32_stays_float32(xpd):
    f32 = [xpd.put(x, dtype="float32") for x in (STUDENT, TEACHER, CENTER)]
    loss, cache = dino.forward(*f32)
    dstudent = dino.backward(1.0, cache)[0]
    assert loss.dtype == xpd.xp.float32 and dstudent.dtype == xpd.xp.float32
    np.testing.assert_allclose(backend.to_numpy(loss), dino.forward(STUDENT, TEACHER, CENTER)[0], rtol=1e-5)
    assert dino.update_center(f32[2], f32[1]).dtype == xpd.xp.float32
