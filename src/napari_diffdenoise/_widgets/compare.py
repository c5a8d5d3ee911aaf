"""The Compare dock widget: metrics between a result layer and a ground-truth layer, per plane."""
from __future__ import annotations

import math

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table

from ..core.imaging.metrics import evaluate
from .denoise import _image_choices, layer_data, notify_error
from .help import help_link
from .layers import follow_layers, is_result
from .sections import Section, extend_form


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


FITTED = "after a least-squares scale-and-offset fit of the result to the truth scaled to 0…1"
# the columns shown: header → (core.imaging.metrics.evaluate's key, what it means for the header's tooltip,
# how its numbers are written); evaluate computes more (NRMSE/mean, for the benchmark tables) than a
# form needs, and short headers and numbers keep the table within a dock's width
COLUMNS = {
    "PSNR": ("PSNR", f"Peak signal-to-noise ratio in dB, {FITTED}: higher is better; +3 dB halves the squared error",
             "{:.2f}"),
    "SSIM": ("SSIM", "Structural similarity (Wang et al. 2004), 0…1: higher is better; compares local means, "
                     "contrasts and structure in 7×7 windows", "{:.3f}"),
    "MS-SSIM": ("MS-SSIM", "Multi-scale SSIM (Wang et al. 2003), 0…1: SSIM over five scales, so coarse structure "
                           "counts too; higher is better", "{:.3f}"),
    "NRMSE": ("NRMSE", f"Root-mean-square error {FITTED}, as a fraction of the truth's range: lower is better",
              "{:.3f}"),
    "MAE": ("MAE", f"Mean absolute error {FITTED}, as a fraction of the truth's range: lower is better", "{:.3f}"),
    "Pearson r": ("Pearson r", "Pearson correlation r of result and truth, pixel by pixel, −1…1, of the result as "
                               "it is (not fitted): higher is better; below 0 the result is inverted, and the fit "
                               "that the other columns follow inverted it back", "{:.3f}"),
}


def formatted(value: float, form: str) -> str:
    return form.format(value) if math.isfinite(value) else "–"


def fit_table(table: Table, tooltips: dict[str, str], padding: int = 14) -> None:
    """Cells shown as written, columns as narrow as their text, the last one filling the dock's width
    (short numbers keep them within it: no horizontal scrolling), and headers that say what they are
    when pointed at."""
    from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

    native = table.native
    # magicgui's delegate rewrites every number (0.903 as 0.9030, 0.0123 as 1.230e-02): the cells show
    # the text they were given, formatted per column
    if type(native.itemDelegate()) is not QStyledItemDelegate:
        native.setItemDelegate(QStyledItemDelegate(native))
    header = native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    native.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def width(metrics, text: str) -> int:
        return max((metrics.horizontalAdvance(line) for line in text.splitlines()), default=0)

    for i in range(native.columnCount()):
        item = native.horizontalHeaderItem(i)
        cells = [native.item(row, i) for row in range(native.rowCount())]
        widest = max([width(header.fontMetrics(), item.text() if item else "")] +
                     [width(native.fontMetrics(), cell.text()) for cell in cells if cell is not None])
        header.resizeSection(i, widest + padding)
        if item is not None and item.text() in tooltips:
            item.setToolTip(tooltips[item.text()])


class CompareWidget(Container):
    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.result = ComboBox(label="Result", choices=self._images, tooltip="e.g. a [mean] layer, or the noisy input")
        self.truth = ComboBox(label="Ground truth", choices=self._images)
        self.compute_button = PushButton(text="Compute")
        self.copy_button = PushButton(text="Copy table")
        self.table = Table()
        self.table.native.setMinimumHeight(160)  # several planes' rows visible, with a scroll bar beyond
        self.note = Label(value="PSNR, SSIM, MS-SSIM, NRMSE and MAE are computed after a least-squares scale-and-offset "
                                "fit of the result to the truth (CARE's protocol), on the truth's range. Point at a "
                                "column's header for what it measures")
        self.note.native.setWordWrap(True)
        self.about = Section("How the scores are computed", [self.note], labels=False)
        self.help = help_link("compare", "Compare")
        self.scores = Section("Scores per plane", [self.table], labels=False)  # unfolded by Compute
        extend_form(self, [self.help, self.result, self.truth, self.compute_button, self.copy_button, self.about, self.scores])
        self._rows: list[dict[str, float]] = []
        self._index: list[str] = []
        self.compute_button.clicked.connect(self.compute)
        self.copy_button.clicked.connect(self.copy)
        follow_layers(napari_viewer, self.result, self.truth)
        for combo in (self.result, self.truth):  # the table scores the layers it names: a choice changed, it is gone
            combo.changed.connect(lambda _value: self._show([], []))
        self.reset_choices()
        self._pick_two()

    def _pick_two(self) -> None:
        """Two different layers to start with (both boxes fell to the first layer, and Compute was refused): the
        latest [mean] of this plugin, if any, against a layer that is neither a result nor that result's input."""
        layers = [layer for _, layer in self._images()]
        means = [layer for layer in layers if is_result(layer) and "[mean]" in layer.name]
        if means:
            self.result.value = means[-1]
        source = self.result.value.metadata.get("napari_diffdenoise", {}).get("source_layer") \
            if self.result.value is not None else None
        others = [layer for layer in layers if layer is not self.result.value]
        truths = [layer for layer in others if not is_result(layer) and layer.name != source] or others
        if truths:
            self.truth.value = truths[0]

    def _images(self, _widget=None):
        return _image_choices(self._viewer)

    def compute(self):
        self._show([], [])  # no stale numbers after an error
        result, truth = self.result.value, self.truth.value
        if result is None or truth is None:
            notify_error("Select a result layer and a ground-truth layer")
            return
        if result is truth:  # it was scored against itself: 331 dB after the truth layer was removed
            notify_error("Result and Ground truth must be different layers")
            return
        if result.rgb or truth.rgb:
            notify_error(f"'{(result if result.rgb else truth).name}' is an RGB layer: Compare scores one channel "
                         "at a time (split its channels into layers first)")
            return
        # full resolution: level 0 of a multiscale layer, as Denoise reads it (np.asarray took the last level); a
        # lazy one read a plane at a time
        pred, gt = (layer_data(layer) for layer in (result, truth))
        if pred.shape != gt.shape:
            notify_error(f"'{result.name}' {pred.shape} and '{truth.name}' {gt.shape} differ in shape")
            return
        if pred.ndim < 2 or min(pred.shape[-2:]) < 7:
            notify_error("Compare needs planes of at least 7×7 pixels")
            return
        if not np.allclose(result.scale, truth.scale) or not np.allclose(result.translate, truth.translate):
            notify_warning(f"'{result.name}' and '{truth.name}' have different scales or positions in the viewer; "
                           "they are compared pixel by pixel")
        positions = list(np.ndindex(pred.shape[:-2]))  # every plane of a stack of any depth (a TZYX [mean] too)
        index = ["plane " + (", ".join(map(str, p)) if p else "0") for p in positions]
        rows, refused, scored = [], [], []
        for label, p in zip(index, positions):
            try:
                rows.append(evaluate(np.asarray(pred[p]), np.asarray(gt[p])))
                scored.append(rows[-1])
            except (ValueError, TypeError) as err:  # that plane alone (a blank slice of a stack): its row says "–"
                said = str(err).replace("the prediction", f"the result '{result.name}'").replace(
                    "the ground truth", f"the ground truth '{truth.name}'")
                refused.append(f"{label}: {said}")
                rows.append({key: math.nan for key, _, _ in COLUMNS.values()})
        if not scored:
            notify_error("Could not compare: " + "; ".join(refused[:3]) + ("; …" if len(refused) > 3 else ""))
            return
        if refused:
            notify_warning(f"{len(refused)} of {len(rows)} planes not scored (the mean leaves them out): "
                           + "; ".join(refused[:3]) + ("; …" if len(refused) > 3 else ""))
        inverted = [i for i, r in enumerate(rows) if r["Pearson r"] < 0]
        if inverted:
            notify_warning(f"'{result.name}' is anti-correlated with '{truth.name}' (Pearson r below 0 on "
                           f"{len(inverted)} of {len(rows)} planes): the fit inverts it, so the other columns score "
                           "the inverted image")
        if len(rows) > 1:
            rows.append({key: float(np.mean([r[key] for r in scored])) for key, _, _ in COLUMNS.values()})
            index.append("mean")
        self._show(rows, index)
        self.scores.collapsed = False

    def _show(self, rows: list[dict[str, float]], index: list[str]):
        self._rows, self._index = rows, index
        data = [[formatted(r[key], form) for key, _, form in COLUMNS.values()] for r in rows]
        self.table.value = {"data": data, "index": index, "columns": list(COLUMNS) if rows else []}
        fit_table(self.table, {header: tip for header, (_, tip, _) in COLUMNS.items()})

    def as_tsv(self) -> str:
        """The table at full precision (what is shown is rounded to fit the dock)."""
        lines = ["\t".join(["", *COLUMNS])]
        lines += ["\t".join([i, *(repr(r[key]) for key, _, _ in COLUMNS.values())])
                  for i, r in zip(self._index, self._rows)]
        return "\n".join(lines)

    def copy(self):
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(self.as_tsv())
