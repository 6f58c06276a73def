"""Face and plate detectors, each a backend behind `streamanon.detect.base`'s protocols.

Face backends: CenterFace (`centerface`, shipped in engines/, MIT; `multiscale` adds the
high-resolution tiles for small faces), dlib's HOG and MMOD (`dlib_detectors`) and SCRFD
(`scrfd`, an insightface model the user already has); `landmarks` adds dlib's 68 points.
Plates: `plates`. Which one a name means, and how the parts are put together, is
`streamanon.registry` (`make_detector`, `make_plate_detector`).
"""
