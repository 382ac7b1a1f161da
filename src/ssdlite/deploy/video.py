"""Video files for ``ssdlite predict``: decode frames and encode the drawn result, with PyAV (FFmpeg).

PyAV is imported only when a video is read (``pip install 'ssdlite[export]'`` installs it).
Frames are uint8 ``(3, H, W)`` RGB tensors, as images are everywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import torch

from ssdlite.deploy.optional import require

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})


class VideoError(Exception):
    """A video that cannot be decoded; the message says why."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def video_rate(path: Path) -> Fraction:
    """Frames per second of the first video stream (25 when the container does not say)."""
    av = require("av", "video input")
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except (av.error.FFmpegError, IndexError) as err:
        raise VideoError(f"cannot open video ({err})") from err
    return Fraction(rate) if rate else Fraction(25)


def read_frames(path: Path) -> Iterator[tuple[int, float, torch.Tensor]]:
    """``(frame index, time in seconds, uint8 (3, H, W))`` for every frame of the first video stream."""
    av = require("av", "video input")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                time = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                yield index, time, torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
    except av.error.FFmpegError as err:
        raise VideoError(f"cannot decode video ({err})") from err


class VideoWriter:
    """Encode uint8 ``(3, H, W)`` frames to an H.264 MP4 at ``path`` (odd sizes are padded by one pixel)."""

    def __init__(self, path: str | os.PathLike, rate: Fraction) -> None:
        self.av = require("av", "video output")
        self.container = self.av.open(str(path), mode="w", format="mp4")
        self.rate = rate
        self.stream = None

    def write(self, frame: torch.Tensor) -> None:
        _, h, w = frame.shape
        frame = torch.nn.functional.pad(frame, (0, w % 2, 0, h % 2))  # yuv420p needs even sizes
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = frame.shape[2], frame.shape[1]
            self.stream.pix_fmt = "yuv420p"
        image = self.av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        for packet in self.stream.encode(image):
            self.container.mux(packet)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
