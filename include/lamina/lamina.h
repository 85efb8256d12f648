/* Lamina — the whole public API: the plugin SDK and the C API. */
#pragma once

#include <lamina/version.h>
#include <lamina/error.h>
#include <lamina/params.h>
#include <lamina/plugin.h>
#include <lamina/registry.h>
#include <lamina/tensor.h>
#include <lamina/kernel.h>
#include <lamina/ops.h>
#include <lamina/backend.h>
#include <lamina/random.h>
#include <lamina/layer.h>
#include <lamina/optimizer.h>
#include <lamina/initializer.h>
#include <lamina/schedule.h>
#include <lamina/dataset.h>
#include <lamina/gradcheck.h>
#include <lamina/config.h>
#include <lamina/model.h>
#include <lamina/checkpoint.h>
#include <lamina/trainer.h>
#include <lamina/attack.h>
#include <lamina/metrics.h>
#include <lamina/export.h>
#include <lamina/image.h>
#include <lamina/predict.h>
