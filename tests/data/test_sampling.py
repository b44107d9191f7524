"""The train order: a function of (seed, epoch, process), shared by 1 and N processes, resumable."""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler, RandomSampler

from leash.data.sampling import ResumableLoader, ResumableSampler


def test_one_process_epoch_zero_is_the_seeded_random_order():
    generator = torch.Generator().manual_seed(7)
    expected = list(RandomSampler(range(10), generator=generator))
    assert list(ResumableSampler(10, shuffle=True, seed=7)) == expected


def test_n_processes_follow_the_distributed_sampler_convention():
    for epoch in (0, 3):
        for rank in (0, 1, 2):
            theirs = DistributedSampler(range(10), num_replicas=3, rank=rank, seed=5)
            theirs.set_epoch(epoch)
            ours = ResumableSampler(10, shuffle=True, seed=5, num_replicas=3, rank=rank)
            ours.set_epoch(epoch)
            assert list(ours) == list(theirs), (epoch, rank)


def test_two_processes_with_half_batches_see_the_one_process_batches():
    one = ResumableSampler(12, shuffle=True, seed=1)
    halves = [ResumableSampler(12, shuffle=True, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in (one, *halves):
        sampler.set_epoch(2)
    single = list(one)
    rank0, rank1 = list(halves[0]), list(halves[1])
    for batch in range(3):  # global batch 4 = 2 rows on each process
        union = rank0[2 * batch : 2 * batch + 2] + rank1[2 * batch : 2 * batch + 2]
        assert sorted(union) == sorted(single[4 * batch : 4 * batch + 4])


def test_epochs_differ_and_unshuffled_is_in_order():
    sampler = ResumableSampler(8, shuffle=True, seed=0)
    assert sampler.epoch_order(0) != sampler.epoch_order(1)
    assert list(ResumableSampler(5, shuffle=False, seed=0)) == [0, 1, 2, 3, 4]


def make_loader(done: list[int], drop_last: bool = False) -> ResumableLoader:
    sampler = ResumableSampler(10, shuffle=True, seed=3)
    return ResumableLoader(
        list(range(10)), batch_size=3, sampler=sampler, drop_last=drop_last,
        batches_done=lambda: done[0],
    )


def test_a_resumed_loader_yields_exactly_the_batches_left():
    done = [0]
    loader = make_loader(done)
    loader.sampler.set_epoch(4)
    uninterrupted = [batch.tolist() for batch in loader]
    done[0] = 2  # training finished two batches of epoch 4, then the run died
    state = loader.state_dict()
    assert state == {"epoch": 4, "batches_done": 2}

    restarted = make_loader([0])
    restarted.load_state_dict(state)
    assert [batch.tolist() for batch in restarted] == uninterrupted[2:]
    # The resume point is used once: the next epoch starts from its beginning.
    restarted.sampler.set_epoch(5)
    assert len(list(restarted)) == 4


def test_a_checkpoint_after_an_epochs_last_batch_resumes_at_the_next_epoch():
    for drop_last, batches in ((False, 4), (True, 3)):
        loader = make_loader([batches], drop_last=drop_last)
        loader.sampler.set_epoch(1)
        reference = make_loader([0], drop_last=drop_last)
        reference.sampler.set_epoch(2)
        restarted = make_loader([0], drop_last=drop_last)
        restarted.load_state_dict(loader.state_dict())
        assert restarted.sampler.epoch == 2
        assert [b.tolist() for b in restarted] == [b.tolist() for b in reference]
