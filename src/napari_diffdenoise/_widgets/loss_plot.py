"""A small live plot of training and validation loss (matplotlib's Qt canvas)."""
from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot(FigureCanvasQTAgg):
    def __init__(self):
        figure = Figure(figsize=(3.5, 2.2), tight_layout=True)
        super().__init__(figure)
        self.axes = figure.add_subplot()
        self.train_line, = self.axes.plot([], [], lw=1, label="train")
        self.val_line, = self.axes.plot([], [], "o-", ms=3, lw=1, label="validation")
        self.axes.set_xlabel("step")
        self.axes.set_ylabel("loss")
        self.axes.set_yscale("log")
        self.axes.legend(loc="upper right", fontsize="small")
        self.clear_data()

    def clear_data(self):
        self.train, self.val = ([], []), ([], [])
        self.redraw()

    def add(self, step: int, train_loss: float, val_loss: float | None):
        self.train[0].append(step)
        self.train[1].append(train_loss)
        if val_loss is not None and (not self.val[1] or self.val[1][-1] != val_loss):
            self.val[0].append(step)
            self.val[1].append(val_loss)

    def redraw(self):
        self.train_line.set_data(*self.train)
        self.val_line.set_data(*self.val)
        if self.train[0]:
            self.axes.relim()
            self.axes.autoscale_view()
        self.draw_idle()
