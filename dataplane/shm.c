#include "link_impl.h"
const st_transport_ops st_shm_ops = {.name = "shm"};
