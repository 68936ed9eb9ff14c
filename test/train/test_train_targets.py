"""Training targets: dense maps brought to a coarser prediction grid take the pixel under each cell's centre."""

import torch

from seqpose_core.geometry import scale_intrinsics
from seqpose_core.train.targets import proposal_targets, resize_labels_nearest

BACKGROUND = 255


def test_resize_samples_the_pixel_under_each_cell_centre():
    image = torch.arange(64).view(1, 8, 8)  # value = 8 * row + column
    cells = resize_labels_nearest(image, (2, 2))[0]  # 4 x 4 pixels per cell, centres at pixels 2 and 6
    assert cells.tolist() == [[8 * 2 + 2, 8 * 2 + 6], [8 * 6 + 2, 8 * 6 + 6]]
    assert cells.dtype == image.dtype
    odd = resize_labels_nearest(torch.arange(9).view(1, 1, 3, 3), (1, 1))
    assert odd.flatten().tolist() == [4]  # 3 x 3 pixels: the middle one


def test_proposal_cells_are_labelled_by_the_object_at_their_centre():
    """Object 0 covers the middle of cell (0, 0) but not its top-left pixel; object 1 shows only in the top-left
    pixel of cell (1, 1). The cell (0, 0) is object 0's, the cell (1, 1) background."""
    index = torch.full((8, 8), BACKGROUND, dtype=torch.int64)
    index[1:4, 1:4] = 0
    index[4, 4] = 1
    labels = torch.tensor([3, 4])
    translations = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.1, 1.0]])
    K = torch.tensor([[8.0, 0.0, 3.5], [0.0, 8.0, 3.5], [0.0, 0.0, 1.0]])
    level_hw = (2, 2)
    cell_class, centre = proposal_targets(index, labels, translations, scale_intrinsics(K, (8, 8), level_hw), level_hw)
    assert cell_class.tolist() == [3, -1, -1, -1]
    # object 0 projects to the image centre (3.5, 3.5) = level (0.5, 0.5): half a cell right of and below the
    # centre of cell (0, 0)
    torch.testing.assert_close(centre[0], torch.tensor([0.5, 0.5, 0.0]))
