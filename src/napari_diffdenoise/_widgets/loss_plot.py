"""A small live plot of training and validation loss (matplotlib's Qt canvas)."""
from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# napari's default dark theme (background, text): a white figure would glare on it
BACKGROUND, FOREGROUND = "#262930", "#f0f1f2"


def dark_axes(figure):
    """One axes coloured for napari's dark theme."""
    figure.patch.set_facecolor(BACKGROUND)
    axes = figure.add_subplot()
    axes.set_facecolor(BACKGROUND)
    for spine in axes.spines.values():
        spine.set_color(FOREGROUND)
    axes.tick_params(colors=FOREGROUND, labelsize="small")
    axes.xaxis.label.set_color(FOREGROUND)
    axes.yaxis.label.set_color(FOREGROUND)
    return axes


class LossPlot(FigureCanvasQTAgg):
    def __init__(self):
        figure = Figure(figsize=(3.5, 2.2), tight_layout=True)
        super().__init__(figure)
        # docked under another widget the canvas would shrink to an unreadable strip
        self.setMinimumHeight(200)
        self.axes = dark_axes(figure)
        self.train_line, = self.axes.plot([], [], lw=1, label="train")
        self.val_line, = self.axes.plot([], [], "o-", ms=3, lw=1, label="validation")
        self.axes.set_xlabel("step")
        self.axes.set_ylabel("loss")
        self.axes.set_yscale("log")
        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        self.empty = self.axes.text(0.5, 0.5, "The training and validation losses\nappear here, step by step",
                                    transform=self.axes.transAxes, ha="center", va="center", color=FOREGROUND,
                                    fontsize="small")
        legend = self.axes.legend(loc="upper right", fontsize="small", facecolor=BACKGROUND, edgecolor=FOREGROUND)
        for text in legend.get_texts():
            text.set_color(FOREGROUND)
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
        started = bool(self.train[0])
        # before the first step: a message, no axis scales (matplotlib's default view of no data is
        # −0.04…0.04, which reads as a plot of nothing)
        self.empty.set_visible(not started)
        self.axes.tick_params(labelbottom=started, labelleft=started, bottom=started, left=started, which="both")
        if started:
            self.axes.relim()
            self.axes.autoscale_view()
            if self.train[0][0] == self.train[0][-1]:  # one point: a view around it, not a zero-width one
                self.axes.set_xlim(self.train[0][0] - 1, self.train[0][0] + 1)
        else:
            self.axes.set_xlim(0, 1)
        self.draw_idle()
