"""Image environments with a known optimum, importable by ``pixel_envs:EnvId`` (eval and resume rebuild them).

A 16×16 uint8 image shows one cell of a 4×4 grid (4×4 pixels each) drawn bright on a dark
board; each step the policy names something about the cell and earns 1 if it is right,
then a new cell is drawn. An episode is :data:`EPISODE` steps, so the optimum is
:data:`EPISODE`.

- ``PixelCell-v0``: name the cell (Discrete(16)); a blind policy scores EPISODE / 16.
- ``PixelDict-v0``: a Dict of the image and a task vector (one-hot: row or column); name the
  cell's row or column as the task asks (Discrete(4)). Reading only the image scores at most
  0.625 · EPISODE, only the task 0.25 · EPISODE.
"""

import gymnasium as gym
import numpy as np

EPISODE = 5
GRID, CELL = 4, 4
SIDE = GRID * CELL


def draw(cell: int, channels: int, channels_first: bool) -> np.ndarray:
    """The board with ``cell`` bright, as (C, H, W) or (H, W, C) uint8."""
    board = np.full((SIDE, SIDE), 20, dtype=np.uint8)
    row, col = divmod(cell, GRID)
    board[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL] = 255
    image = np.repeat(board[None], channels, axis=0)
    return image if channels_first else np.ascontiguousarray(image.transpose(1, 2, 0))


def image_space(channels: int, channels_first: bool) -> gym.spaces.Box:
    shape = (channels, SIDE, SIDE) if channels_first else (SIDE, SIDE, channels)
    return gym.spaces.Box(0, 255, shape, np.uint8)


class PixelCell(gym.Env):
    """Name the bright cell (``task=False``), or its row or column as a task vector asks (``task=True``)."""

    def __init__(self, channels: int = 3, channels_first: bool = False, task: bool = False) -> None:
        self.channels, self.channels_first, self.task = channels, channels_first, task
        image = image_space(channels, channels_first)
        if task:
            self.observation_space = gym.spaces.Dict(
                {"image": image, "task": gym.spaces.Box(0.0, 1.0, (2,), np.float32)}
            )
            self.action_space = gym.spaces.Discrete(GRID)
        else:
            self.observation_space = image
            self.action_space = gym.spaces.Discrete(GRID * GRID)

    def _draw_new(self):
        self.cell = int(self.np_random.integers(GRID * GRID))
        self.which = int(self.np_random.integers(2))
        image = draw(self.cell, self.channels, self.channels_first)
        if not self.task:
            return image
        return {"image": image, "task": np.eye(2, dtype=np.float32)[self.which]}

    def answer(self) -> int:
        if not self.task:
            return self.cell
        return divmod(self.cell, GRID)[self.which]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw_new(), {}

    def step(self, action):
        reward = float(int(action) == self.answer())
        self.t += 1
        return self._draw_new(), reward, False, self.t >= EPISODE, {}


gym.register("PixelCell-v0", entry_point=PixelCell)
gym.register("PixelDict-v0", entry_point=PixelCell, kwargs={"channels": 1, "channels_first": True, "task": True})
