/* The dashcam platform's objects: groups, bookmarks, geofences, events,
 * drivers, regional settings and the map (being written). */
#include "controller/api_int.h"

const api_route api_dashcam_routes[1] = {{0}};
const size_t api_dashcam_nroutes = 0;
