"""What a planner reads from the scene memory: the objects it remembers, as a dynamics state.

:func:`planning_state` turns a memory's read-only :class:`~splatworld.memory.MemoryView` into a
:class:`PlanningState`: a batch-1 :class:`~splatworld.dynamics.WorldState` (box centres,
orientations, velocities, extents, the scaffold as a heightmap) plus, per slot, the memory's
object id, visibility state, existence belief and last-seen time. Objects out of view or behind
an occluder are in it like visible ones: that is what the memory is for. ``forget_after`` drops
objects unseen for longer (a memoryless planner, the comparison the planning benchmark makes).

Static geometry: ``state.world.geometry.height_at(xy)`` (batched, torch) is the highest static
surface under x-y points (support and walls as one 2.5D map); the memory itself answers
``signed_distance(points)`` and ``support_height(xy)`` for arbitrary 3D queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from splatworld.dynamics.data import MemorySlots, state_from_memory
from splatworld.memory.view import MemoryView
from splatworld.dynamics.state import WorldState
from splatworld.errors import SplatworldError


@dataclass(frozen=True)
class PlanningState:
    """The memory's objects at one time, ready for batched rollouts.

    Attributes:
        world: batch-1 :class:`WorldState` with ``N`` object slots.
        ids: ``N`` memory object ids, one per slot.
        states: ``N`` visibility states (``visible``, ``occluded``, ``out_of_view``, ``contradicted``).
        beliefs: ``[N]`` existence beliefs.
        last_seen: ``[N]`` time (s) each object was last observed.
        slots: maps slots back to memory object poses (:meth:`MemorySlots.object_poses`).
    """

    world: WorldState
    ids: tuple[int, ...]
    states: tuple[str, ...]
    beliefs: torch.Tensor
    last_seen: torch.Tensor
    slots: MemorySlots

    def slot(self, object_id: int) -> int:
        """The slot of memory object ``object_id``; raises if the state does not hold it."""
        if object_id not in self.ids:
            raise SplatworldError(f"object {object_id} is not in the planning state (holds {list(self.ids)})")
        return self.ids.index(object_id)

    def objects(self) -> list[dict]:
        """One dict per slot: id, box centre ``position``, ``extent``, state, belief, last_seen."""
        w = self.world
        return [{"id": i, "position": w.position[0, k].tolist(), "extent": w.extent[0, k].tolist(),
                 "state": self.states[k], "belief": float(self.beliefs[k]), "last_seen": float(self.last_seen[k])}
                for k, i in enumerate(self.ids)]


def planning_state(view: MemoryView, agent_position, dt: float = 0.1, forget_after: float | None = None,
                   min_belief: float = 0.5) -> PlanningState:
    """The planner's state of a memory's ``view`` (:meth:`SceneMemory.view`), the agent at
    ``agent_position [3]``.

    Args:
        dt: the dynamics step (for velocities from the last two poses).
        forget_after: drop objects not observed for more than this many seconds (None: keep all,
            as the memory does; 1.0: the memoryless comparison).
        min_belief: drop objects whose existence belief fell below this (contradicted ones).
    """
    world, slots = state_from_memory(view, agent_position, dt)
    tracks = view.by_id()
    keep = [k for k, i in enumerate(slots.ids)
            if tracks[i].belief >= min_belief
            and (forget_after is None or view.time - tracks[i].last_seen <= forget_after)]
    index = torch.tensor(keep, dtype=torch.long)
    world = world.replace(**{name: getattr(world, name)[:, index] for name in world.present(WorldState.OBJECT_TENSORS)})
    ids = tuple(slots.ids[k] for k in keep)
    return PlanningState(world, ids, tuple(tracks[i].state.value for i in ids),
                         torch.tensor([tracks[i].belief for i in ids], dtype=torch.float64),
                         torch.tensor([tracks[i].last_seen for i in ids], dtype=torch.float64),
                         MemorySlots(ids, slots.object_from_box[index]))


def as_float32(state: WorldState) -> WorldState:
    """``state`` with its float tensors in float32 (rollouts for planning need no float64)."""
    return state.replace(**{name: getattr(state, name).float() for name in state.present(WorldState.TENSORS)
                            if getattr(state, name).is_floating_point()})


__all__ = ["PlanningState", "as_float32", "planning_state"]
