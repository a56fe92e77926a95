/*
 * TUN and UDP segmentation offloads (issue 5): not built yet. This file registers nothing.
 */
#include "common.h"

void km_register_offload(napi_env env, napi_value exports) { (void)env, (void)exports; }
