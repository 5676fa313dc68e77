"""The world model: a scene memory, a dynamics model and a renderer, composed.

``observe`` builds the memory from frames ``[0, k)``; ``imagine`` then advances the remembered
objects with the dynamics under the agent's commands and draws each future camera, one frame at a
time (a generator: nothing accumulates, so a 10-minute imagination holds flat memory). It follows
the imagination protocol of the episode format: for future frames it reads only each frame's
camera, time, agent pose and action.

The next-frame protocol (``predict`` then ``observe_next``, frame after frame) scores the same
model as a filter: each frame is drawn from everything observed before it, then observed. The
objects the last frame did not show are moved by the dynamics between frames, so one pushed while
hidden is remembered where it was pushed to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from splatworld.dynamics.data import MemorySlots, state_from_memory
from splatworld.dynamics.models import DynamicsModel
from splatworld.dynamics.state import Heightmap, WorldState
from splatworld.errors import SplatworldError
from splatworld.memory import SceneMemory
from splatworld.progress import progress_bar
from splatworld.render.video import to_uint8
from splatworld.scene.build import gaussians_from_shape
from splatworld.scene.cameras import Camera
from splatworld.scene.episode import Episode, Frame, FrameInfo
from splatworld.scene.gaussians import Gaussians
from splatworld.scene.transforms import matrix_to_pose

PROTOCOLS = ("imagination", "next_frame")
"""How ``splatworld imagine`` makes future frames: ``imagination`` open loop from the camera path
and the agent's commands (:meth:`WorldModel.imagine`); ``next_frame`` each from every frame before
it (:meth:`WorldModel.predict`, then :meth:`WorldModel.observe_next`). The benchmark's ``return``
protocol is :func:`imagine_returns`."""


@dataclass
class ImaginedFrame:
    """One imagined frame.

    Attributes:
        index: the frame's number in the episode.
        time: seconds.
        rgb: ``[H, W, 3]`` uint8.
        depth: ``[H, W]`` float32 metres, 0 where nothing is drawn.
        instances: ``[H, W]`` uint16, the memory's object id drawn at each pixel, 0 for the static scene.
        poses: world_from_object ``[7]`` (xyz + wxyz) of every imagined object, by object id.
    """

    index: int
    time: float
    rgb: np.ndarray
    depth: np.ndarray
    instances: np.ndarray
    poses: dict[int, list[float]]


class WorldModel:
    """A memory, a dynamics model and a renderer behind two calls: :meth:`observe` and :meth:`imagine`.

    Args:
        memory: the scene memory to observe into (a fresh one if omitted; a loaded one to start
            from a saved memory).
        dynamics: a :class:`~splatworld.dynamics.models.DynamicsModel` (its ``config.dt`` is the
            simulation step; frames further apart take several steps).
        backend: renderer backend (``auto``, ``cpu``, ``torch``, ``gsplat``).
        forget_after: seconds after which an object that was not seen (observed, then drawn in an
            imagined frame) is forgotten for good; None (default) never forgets. The evaluation's
            ``memoryless`` baseline forgets after 1 s.
        agent_shape: the episode's ``agent_shape`` (cylinder, sphere or box): the agent is drawn
            there at each frame's agent pose, in the colour the memory saw it in, hiding what is
            behind it. None: not drawn.
    """

    AGENT_GAUSSIANS = 800  # about 5 mm apart on the 2.5 x 10 cm pusher

    def __init__(self, memory: SceneMemory, dynamics: DynamicsModel, backend: str = "auto",
                 forget_after: float | None = None, agent_shape: dict | None = None):
        self.memory, self.dynamics, self.backend = memory, dynamics, backend
        self.forget_after = forget_after
        self.agent_shape = agent_shape
        self._agent: tuple[tuple, Gaussians] | None = None  # (colour, agent Gaussians in its own frame)
        if agent_shape is not None:
            gaussians_from_shape(agent_shape, 1, (0.5, 0.5, 0.5))  # a bad shape fails here, not mid-run
        self.agent_pose: np.ndarray | None = None  # [7] at the frame drawn next
        self.last_seen: dict[int, float] = {}  # object id -> time it was last seen or drawn
        self.state: WorldState | None = None  # the objects' imagined state, batch 1
        self.slots: MemorySlots | None = None
        self.action = np.zeros(2)  # the agent command in force since the last frame
        self.last_observed: FrameInfo | None = None  # the memory's last frame, where predictions start
        self.predicted: tuple[int, dict[int, np.ndarray]] | None = None  # (frame, object poses) not yet committed
        self._geometry: tuple[int, Heightmap] | None = None  # (static refresh it was made at, heightmap)

    # ----------------------------------------------------------------- observe
    def observe(self, episode: Episode, until: int, progress: bool = False,
                after_frame: Callable[[Frame], None] | None = None) -> None:
        """Observe frames ``[0, until)`` of ``episode`` in full (the protocol's observed part);
        ``after_frame(frame)`` runs after each (a scorer reading ``memory.last_instances``)."""
        view = episode.protocol_view(until)
        for i in progress_bar(range(until), desc="observe", unit="frame", disable=not progress):
            frame = view.observed(i)
            self.memory.observe(frame)
            if after_frame is not None:
                after_frame(frame)
        self.begin(episode.info(until - 1))

    def begin(self, last: FrameInfo) -> None:
        """Start imagining from what the memory holds now; ``last`` is the last observed frame's
        info (its agent pose and the command it applied)."""
        if last.agent_pose is None:
            raise SplatworldError(f"frame {last.index}: imagination needs the agent pose of the last observed frame")
        if abs(last.time - self.memory.time) > 1e-6:
            raise SplatworldError(f"frame {last.index} (t={last.time}) is not the memory's last observed frame "
                                  f"(t={self.memory.time})")
        # the scaffold's heightmap changes as slowly as the memory's static map is refreshed
        view = self.memory.view()
        if self._geometry is None or self._geometry[0] != view.static_refresh:
            self._geometry = (view.static_refresh, Heightmap.from_memory(view))
        self.state, self.slots = state_from_memory(view, last.agent_pose[:3], self.dynamics.config.dt,
                                                   self._geometry[1])
        self.last_seen = {o.id: o.last_seen for o in view.objects}
        self.action = np.zeros(2) if last.action is None else np.asarray(last.action, dtype=np.float64)
        self.agent_pose = np.asarray(last.agent_pose, dtype=np.float64)
        self.last_observed = last

    # ----------------------------------------------------------------- imagine
    def advance(self, info: FrameInfo) -> None:
        """Move the imagined state to frame ``info``: dynamics steps under the command in force,
        then the agent where the frame says it is; its command holds until the next frame."""
        if self.state is None:
            raise SplatworldError("imagine before observe/begin: the world model has no state yet")
        dt = self.dynamics.config.dt
        gap = info.time - float(self.state.time[0])
        steps = round(gap / dt)
        if steps < 1 or abs(steps * dt - gap) > 1e-3 * dt + 1e-6:
            raise SplatworldError(f"frame {info.index}: {gap:.4f} s after the previous one; the dynamics step "
                                  f"is {dt} s, so frames must be a positive multiple of it apart")
        action = torch.as_tensor(self.action, dtype=torch.float64)[None]
        with torch.no_grad():
            for _ in range(steps):
                self.state = self.dynamics.step(self.state, action)
        # the protocol gives the agent's pose: no reason to let integrated commands drift from it
        time = torch.tensor([info.time], dtype=torch.float64)
        agent = self.state.agent if info.agent_pose is None else \
            torch.as_tensor(np.asarray(info.agent_pose[:3], dtype=np.float64))[None]
        self.state = self.state.replace(agent=agent, time=time)
        self.action = np.zeros(2) if info.action is None else np.asarray(info.action, dtype=np.float64)
        if info.agent_pose is not None:
            self.agent_pose = np.asarray(info.agent_pose, dtype=np.float64)
        else:  # where the integrated commands took it, upright
            self.agent_pose = np.concatenate([self.state.agent[0].numpy(), [1.0, 0.0, 0.0, 0.0]])

    def object_poses(self) -> dict[int, np.ndarray]:
        """world_from_object ``[4, 4]`` of every imagined object now, by memory object id."""
        return self.slots.object_poses(self.state.position[0], self.state.quat[0])

    def draw(self, camera: Camera, index: int, time: float) -> ImaginedFrame:
        """Render the imagined state from ``camera`` (objects forgotten by ``forget_after`` left out)."""
        poses = self.object_poses()
        if self.forget_after is not None:
            poses = {i: p for i, p in poses.items() if time - self.last_seen.get(i, -np.inf) <= self.forget_after}
        out = self.memory.render(camera, backend=self.backend, poses=poses, movers=self._agent_gaussians())
        rgb = to_uint8(out.rgb.numpy())
        drawn = out.alpha.numpy() > 0.5
        depth = np.where(drawn, out.depth.numpy(), 0).astype(np.float32)
        instances = np.where(drawn, out.object_id.numpy().clip(min=0), 0).astype(np.uint16)
        for i in np.unique(instances).tolist():
            if i in poses:
                self.last_seen[i] = time
        as_7 = dict(zip(poses, matrix_to_pose(torch.from_numpy(np.stack(list(poses.values())))).tolist())) if poses else {}
        return ImaginedFrame(index, time, rgb, depth, instances, as_7)

    def _agent_gaussians(self) -> Gaussians | None:
        """The agent at :attr:`agent_pose` as world Gaussians (labelled with the agent's label), or
        None without an ``agent_shape``."""
        if self.agent_shape is None or self.agent_pose is None:
            return None
        color = tuple(self.memory.agent_color.tolist())
        if self._agent is None or self._agent[0] != color:
            self._agent = (color, gaussians_from_shape(self.agent_shape, self.AGENT_GAUSSIANS, color,
                                                       object_id=self.memory.agent_label))
        return self._agent[1].transform(torch.from_numpy(self.agent_pose).float())

    def imagine(self, future: Iterable[tuple[FrameInfo, Camera]]) -> Iterator[ImaginedFrame]:
        """Imagine each future frame in turn from its ``(info, camera)``: only the camera, time,
        agent pose and action are read. Yields :class:`ImaginedFrame` (a stream)."""
        for info, camera in future:
            self.advance(info)
            yield self.draw(camera, info.index, info.time)

    # ----------------------------------------------------------------- next-frame protocol
    def predict(self, info: FrameInfo, camera: Camera) -> ImaginedFrame:
        """Frame ``info`` as expected from every frame observed before it: the memory's objects
        advanced by the dynamics from its last frame, drawn from ``camera``. Reads only the
        camera, time, agent pose and action of ``info``, and leaves the memory as it is: the
        prediction is committed to it by :meth:`observe_next`."""
        if self.last_observed is None:
            raise SplatworldError("predict before observe: the world model has observed nothing yet")
        if info.index != self.last_observed.index + 1:
            raise SplatworldError(f"frame {info.index}: the next frame to predict is {self.last_observed.index + 1}")
        self.begin(self.last_observed)
        self.advance(info)
        self.predicted = (info.index, self.object_poses())
        return self.draw(camera, info.index, info.time)

    def observe_next(self, frame: Frame) -> None:
        """Commit the prediction of this frame, then observe it in full: the objects the last frame
        did not show move where the dynamics took them (:meth:`SceneMemory.move_unseen`; an object
        pushed while hidden is remembered where it was pushed to), the ones it showed are left to
        the observation. A model that forgets (``forget_after``) then drops what it has not seen
        for that long."""
        if self.last_observed is None or frame.info.index != self.last_observed.index + 1:
            raise SplatworldError(f"frame {frame.info.index}: observe frames in order, after predicting each")
        if self.predicted is None or self.predicted[0] != frame.info.index:
            raise SplatworldError(f"frame {frame.info.index}: predict it before observing it")
        self.memory.move_unseen(self.predicted[1])
        self.predicted = None
        self.memory.observe(frame)
        if self.forget_after is not None:
            self.memory.forget_unseen(self.forget_after)
        self.last_observed = frame.info

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """The imagined state (not the memory): enough to continue an interrupted imagination."""
        if self.state is None:
            raise SplatworldError("the world model has no imagined state to save")
        tensors = {k: getattr(self.state, k) for k in self.state.present(WorldState.TENSORS)}
        return {"tensors": tensors, "slots": {"ids": list(self.slots.ids), "object_from_box": self.slots.object_from_box},
                "action": self.action.tolist(), "last_seen": dict(self.last_seen), "last_observed": self.last_observed,
                "agent_pose": self.agent_pose}

    def load_state_dict(self, saved: dict) -> None:
        """Continue from :meth:`state_dict`; the memory must be the one it was imagined from."""
        self.state = WorldState(**saved["tensors"], geometry=Heightmap.from_memory(self.memory.view()))
        self.slots = MemorySlots(tuple(saved["slots"]["ids"]), saved["slots"]["object_from_box"])
        self.action = np.asarray(saved["action"], dtype=np.float64)
        self.last_seen = dict(saved["last_seen"])
        self.last_observed = saved["last_observed"]
        self.agent_pose = saved["agent_pose"]


def imagine_returns(worlds: Sequence[WorldModel], episode: Episode, queries: Sequence[tuple[int, int]],
                    progress: bool = False) -> Iterator[tuple[int, list[ImaginedFrame]]]:
    """The return protocol: for each query ``(b, c)``, frame ``c`` imagined after observing every
    frame before ``b`` in full, from the cameras, times and actions of ``b..c`` alone.

    The episode is observed once, in order, into the memory all ``worlds`` share (variants of one
    model: other dynamics, forgetting); at each ``b`` every world forks its imagined state from
    what the memory holds then (:meth:`WorldModel.begin`: imagining reads the memory, never changes
    it) and runs it to ``c``. Yields ``(query index, [frame c of each world])`` in order of ``b``."""
    memory = worlds[0].memory
    if any(w.memory is not memory for w in worlds):
        raise SplatworldError("imagine_returns: the worlds must share one memory (they observe the episode once)")
    for q, (b, c) in enumerate(queries):
        if not 0 < b <= c < len(episode):
            raise SplatworldError(f"return query {q}: need 0 < b ({b}) <= c ({c}) < {len(episode)} frames")
    observed = memory.frame_count
    bar = progress_bar(total=max((b for b, _ in queries), default=0), initial=observed, desc="return: observe",
                       unit="frame", disable=not progress)
    for q in sorted(range(len(queries)), key=lambda q: queries[q][0]):
        b, c = queries[q]
        if b < observed:
            raise SplatworldError(f"return query {q}: the memory has observed {observed} frames, past b={b}")
        for i in range(observed, b):
            memory.observe(episode[i])
            bar.update(1)
        observed = b
        frames = []
        for world in worlds:
            world.begin(episode.info(b - 1))
            *_, last = world.imagine((episode.info(i), episode.camera(i)) for i in range(b, c + 1))
            frames.append(last)
        yield q, frames
    bar.close()
