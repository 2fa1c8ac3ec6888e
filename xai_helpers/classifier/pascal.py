"""Which ImageNet classes are objects that a PASCAL VOC segmentation network can outline.

DeepLab v3 (``segmentation``) labels every pixel with one of the 21 PASCAL VOC 2012 categories
(Everingham et al., "The PASCAL Visual Object Classes Challenge", IJCV 2010). An ImageNet class maps to the
PASCAL category its objects belong to (every dog breed to "dog", every domestic cat to "cat", the birds
to "bird", the named vehicles, bottles, chairs, farm animals, sofas, tables, pots and screens to theirs);
the other ImageNet classes (lizards, fish, insects, tools, food, ...) have no category, and their photos
no object mask. The ranges are Keras's ImageNet class indices (``imagenet_class_index.json``); a test
checks every index and category by name.
"""
from __future__ import annotations

#: PASCAL VOC 2012's categories, in the order of the segmentation network's output labels (0 = background).
PASCAL_CATEGORIES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                     "chair", "cow", "dining table", "dog", "horse", "motorbike", "person", "potted plant",
                     "sheep", "sofa", "train", "tv/monitor")

#: ImageNet class indices of each PASCAL category: ranges (first, last) and single classes.
_CLASSES = {
    "aeroplane": [404, 895],                                        # airliner, warplane
    "bicycle": [444, 671],                                          # tandem, mountain bike
    "bird": [(7, 24), (80, 100), (127, 146)],                       # cock .. great grey owl, black grouse ..
                                                                    # black swan, white stork .. albatross
    "boat": [403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914],
    "bottle": [440, 720, 737, 898, 907],                            # beer, pill, pop, water, wine bottle
    "bus": [654, 779, 874],                                         # minibus, school bus, trolleybus
    "car": [407, 436, 468, 511, 609, 627, 656, 661, 675, 717, 734, 751, 817],
    "cat": [(281, 285)],                                            # tabby .. Egyptian cat
    "chair": [423, 559, 765, 857],                                  # barber, folding, rocking chair, throne
    "cow": [345, 346, 347],                                         # ox, water buffalo, bison
    "dining table": [532],
    "dog": [(151, 268)],                                            # Chihuahua .. Mexican hairless
    "horse": [339],                                                 # sorrel
    "motorbike": [665, 670],                                        # moped, motor scooter
    "person": [981, 982, 983],                                      # ballplayer, groom, scuba diver
    "potted plant": [738],                                          # pot
    "sheep": [348, 349],                                            # ram, bighorn
    "sofa": [831],                                                  # studio couch
    "train": [466, 547, 565, 705, 820, 829],                        # bullet train .. streetcar
    "tv/monitor": [527, 664, 782, 851],                             # desktop computer, monitor, screen, TV
}


def _expand() -> dict[int, int]:
    mapping = {}
    for category, entries in _CLASSES.items():
        for entry in entries:
            first, last = entry if isinstance(entry, tuple) else (entry, entry)
            for index in range(first, last + 1):
                mapping[index] = PASCAL_CATEGORIES.index(category)
    return mapping


#: ImageNet class index -> PASCAL category label (1..20), for the classes that have one.
IMAGENET_TO_PASCAL = _expand()


def pascal_category(class_index: int) -> int | None:
    """The PASCAL category label (1..20) of an ImageNet class, or None when it has none."""
    return IMAGENET_TO_PASCAL.get(int(class_index))


__all__ = ["IMAGENET_TO_PASCAL", "PASCAL_CATEGORIES", "pascal_category"]
