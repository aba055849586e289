# The config of tests/trainings/scripted.py's `--build cfg` trainings (Runner.from_cfg): MMEngine's usual keys,
# the types registered by scripted.py. The script sets work_dir, resume, the scenario and max_epochs.
model = dict(type='ScriptedDetector', scenario='healthy', step_seconds=0.2)
train_dataloader = dict(batch_size=2, num_workers=0, dataset=dict(type='scripted_dataset'),
                        sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(batch_size=2, num_workers=0, dataset=dict(type='scripted_dataset'),
                      sampler=dict(type='DefaultSampler', shuffle=False))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=1)
val_cfg = dict(type='ValLoop')
val_evaluator = dict(type='ScriptedMAP', scenario='healthy')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[4], gamma=0.1)]
default_scope = 'mmengine'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=2),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, save_best='coco/bbox_mAP', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_processor = dict(type='LogProcessor', window_size=2, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
