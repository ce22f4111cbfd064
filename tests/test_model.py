"""The towers: shapes, learning a tiny batch, and unseen items."""

import numpy as np
import torch

from rolecall.model import LastState, TowerShape, build


def _shape(**kw) -> TowerShape:
    return TowerShape(n_ids=20, field_sizes=[4, 6], n_event_types=8,
                      dim=16, dropout=0.0, **kw)


def test_shapes_of_both_towers():
    torch.manual_seed(0)
    model = build(_shape())
    ids = torch.randint(0, 20, (3, 5))
    feats = torch.randint(0, 4, (3, 5, 2))
    types = torch.randint(0, 8, (3, 5))
    mask = torch.ones(3, 5)
    states = model.encode_sessions(ids, feats, types, mask)
    assert states.shape == (3, 5, 17)
    assert torch.all(states[..., -1] == 1.0)  # the bias coordinate
    assert model.item(ids[0], feats[0]).shape == (5, 17)


def test_padding_does_not_change_earlier_states():
    torch.manual_seed(0)
    model = build(_shape()).eval()
    ids = torch.tensor([[1, 2, 3, 0]])
    feats = torch.zeros(1, 4, 2, dtype=torch.long)
    types = torch.ones(1, 4, dtype=torch.long)
    full = model.encode_sessions(ids, feats, types, torch.ones(1, 4))
    cut = model.encode_sessions(ids[:, :3], feats[:, :3], types[:, :3],
                                torch.ones(1, 3))
    assert torch.allclose(full[0, :3], cut[0], atol=1e-6)


def test_last_state_alone_equals_the_last_of_all_states():
    torch.manual_seed(0)
    model = build(_shape()).eval()
    with torch.inference_mode():
        for L in (1, 2, 7):
            x = torch.randn(L, 16)
            types = torch.randint(0, 3, (L,))
            every = model.session(x[None], types[None], torch.ones(1, L))
            assert torch.allclose(model.session.last(x, types),
                                  every[0, -1], atol=1e-5)


def test_numpy_last_state_equals_torch_cold_resumed_and_cached():
    torch.manual_seed(0)
    model = build(_shape()).eval()
    vecs = torch.randn(20, 16)
    fast = LastState(model.session, cache_size=4)
    rng = np.random.default_rng(0)
    items = rng.integers(0, 20, 30).tolist()
    types = rng.integers(0, 8, 30).tolist()
    with torch.inference_mode():
        for L in range(1, 31):  # each click one event longer: resumed
            want = model.session.last(vecs[torch.tensor(items[:L])],
                                      torch.tensor(types[:L])).numpy()
            got = fast(vecs.numpy(), items[:L], types[:L])
            assert np.allclose(got, want, atol=1e-5), L
        assert len(fast._hidden) == 4  # bounded
        again = fast(vecs.numpy(), items, types)  # cached: no GRU step
        assert np.allclose(again, want, atol=1e-5)
        # Another session sharing no prefix starts from zeros.
        other = [3, 1, 4]
        want = model.session.last(vecs[torch.tensor(other)],
                                  torch.tensor([0, 1, 2])).numpy()
        assert np.allclose(fast(vecs.numpy(), other, [0, 1, 2]), want,
                           atol=1e-5)


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build(_shape())
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    feats = torch.randint(0, 4, (2, 4, 2))
    types = torch.ones(2, 4, dtype=torch.long)
    mask = torch.ones(2, 4)
    all_ids = torch.arange(20)
    all_feats = torch.randint(0, 4, (20, 2))
    all_feats[ids.ravel()] = feats.reshape(-1, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        states = model.encode_sessions(ids, feats, types, mask)[:, :-1]
        logits = states.reshape(-1, 17) @ model.item(all_ids, all_feats).T
        loss = torch.nn.functional.cross_entropy(
            logits, ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert torch.equal(logits.argmax(1), ids[:, 1:].reshape(-1))


def test_item_without_id_is_embedded_from_its_attributes():
    torch.manual_seed(0)
    model = build(_shape()).eval()
    unknown = torch.zeros(2, dtype=torch.long)  # id row 0: no own id
    feats = torch.tensor([[1, 2], [3, 5]])
    vecs = model.item(unknown, feats)
    assert not torch.allclose(vecs[0], vecs[1])
    same = model.item(unknown, torch.tensor([[1, 2], [1, 2]]))
    assert torch.allclose(same[0], same[1])
