/* Geofence shapes: validation of the "shape" part of a geofence request,
 * its canonical form, and point containment.
 *
 * Two shapes, as JSON objects:
 *   {"type":"circle","center":{"lat":LAT,"lon":LON},"radius_m":R}
 *   {"type":"polygon","points":[{"lat":LAT,"lon":LON}, ...]}
 * LAT is a number in -90..90, LON in -180..180 (degrees, WGS 84), R in
 * CTL_GEO_RADIUS_MIN_M..CTL_GEO_RADIUS_MAX_M metres. Every field is required
 * and no other field is allowed, nor one given twice.
 *
 * A polygon has CTL_GEO_POLY_MIN..CTL_GEO_POLY_MAX vertices. A last point
 * equal to the first (a closed ring, as GeoJSON writes it) is allowed and
 * dropped, and then does not count. After that: no two consecutive vertices
 * are equal (the last and the first are consecutive), not all vertices are on
 * one line, the polygon is simple (no edge crosses or touches another,
 * except adjacent edges at their shared vertex; collinear overlaps count as
 * touching), and no edge crosses the antimeridian: consecutive longitudes
 * differ by at most 180 degrees, so a fence across 180 must be split in two.
 *
 * Precision: the geometry is checked exactly on coordinates rounded to
 * CTL_GEO_SCALE units per degree (1e-7 degree, about 1 cm, the precision of
 * OpenStreetMap); two points closer than that are the same point.
 * ctl_geo_normalize stores the rounded coordinates, so the canonical form is
 * what was checked and validates again unchanged.
 *
 * Pure code: no I/O, no global state, thread safe. The only allocation is
 * the copy ctl_geo_normalize hands back. */
#ifndef CTL_GEO_H
#define CTL_GEO_H

#include <cjson/cJSON.h>

/* Polygon vertices, closing point not counted. 3 is the least that encloses
 * anything; 500 is plenty for a hand-drawn fence, keeps the O(n^2)
 * simplicity test at ~125k edge pairs per request and the stored object
 * (~40 bytes a point) well under CTL_DIR_JSON_MAX. */
#define CTL_GEO_POLY_MIN 3
#define CTL_GEO_POLY_MAX 500

/* Circle radius in metres: under 1 m is below GPS precision; 100 km is the
 * largest fence the dashcam platform allows. */
#define CTL_GEO_RADIUS_MIN_M 1.0
#define CTL_GEO_RADIUS_MAX_M 100000.0

/* Coordinate units per degree for the exact geometry (see above). At this
 * scale a longitude fits in 32 bits and every product of two coordinate
 * differences in int64, so the geometry needs no wider integers. */
#define CTL_GEO_SCALE 10000000.0

/* Mean Earth radius (IUGG) for the haversine distance of circles. */
#define CTL_GEO_EARTH_RADIUS_M 6371008.8

/* Sizes of the error texts, NUL included: a field path is at most
 * "shape.center." plus an object key cut to 32 bytes. */
#define CTL_GEO_FIELD_MAX 64
#define CTL_GEO_MESSAGE_MAX 160

/* Why a shape is invalid. field is a JSON path from the shape, which is
 * called "shape" ("shape.points[3].lat", "shape.radius_m", "shape"); message
 * says what is wrong in English ("must be a number between -90 and 90").
 * Both are NUL-terminated printable ASCII without '"' or '\\': bytes of a
 * client's object key outside that set are shown as '?', so both can go
 * into a JSON error body as they are. */
typedef struct {
    char field[CTL_GEO_FIELD_MAX];
    char message[CTL_GEO_MESSAGE_MAX];
} ctl_geo_err;

/* Validates a shape (rules above). Returns 0 if it is valid, 1 if not, with
 * *err filled in if err is not NULL (it is left untouched on 0). A NULL
 * shape is invalid (field "shape"). Allocates nothing. */
int ctl_geo_validate(const cJSON *shape, ctl_geo_err *err);

/* A new canonical copy of a valid shape: only the known fields, in the order
 * written above, coordinates rounded to 1/CTL_GEO_SCALE degree, a polygon's
 * closing point dropped. NULL if the shape is invalid (ctl_geo_validate
 * says why) or allocation fails. The caller frees it with cJSON_Delete. */
cJSON *ctl_geo_normalize(const cJSON *shape);

/* Whether the point (lat, lon) is in the shape, meant for the output of
 * ctl_geo_normalize (any valid shape works). Circle: haversine distance to
 * the center at most the radius. Polygon: even-odd ray casting on (lon, lat)
 * as plane coordinates, which is right for fences that do not cross the
 * antimeridian; a point exactly on an edge may fall either way.
 * Returns 1 inside, 0 outside, -EINVAL if the shape is not a circle or
 * polygon of finite numbers or lat/lon are not finite and in range. */
int ctl_geo_contains(const cJSON *normalized, double lat, double lon);

#endif
