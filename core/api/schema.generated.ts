// Generated from crds/trainingfederations.fedtrain.dev.yaml by scripts/gen-api.ts. Do not edit:
// change the CRD and run `npm run gen:api`.

/** The openAPIV3Schema of TrainingFederation v1alpha1, exactly as in the CRD. */
export const trainingFederationSchema = {
  "type": "object",
  "description": "TrainingFederation makes this cluster a member of a federation of independently owned clusters that train one model together with DiLoCo-style low-communication optimisation. Create one per member cluster: spec.federation is identical in every member, spec.contribution and spec.transport are this cluster's own.",
  "required": [
    "spec"
  ],
  "properties": {
    "apiVersion": {
      "type": "string",
      "description": "Versioned schema of this representation of an object (fedtrain.dev/v1alpha1)."
    },
    "kind": {
      "type": "string",
      "description": "REST resource this object represents (TrainingFederation)."
    },
    "metadata": {
      "type": "object",
      "properties": {
        "name": {
          "type": "string",
          "description": "A DNS label of at most 49 characters: the trainer Job's pods are named <name>-trainers-<index>, and a pod's host name is at most 63 characters.",
          "maxLength": 49,
          "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
        }
      }
    },
    "spec": {
      "type": "object",
      "description": "The desired state of this member.",
      "required": [
        "federation"
      ],
      "x-kubernetes-validations": [
        {
          "rule": "!has(self.federation.data.text) || !has(self.federation.data.text.path) || has(self.contribution.dataVolumeClaim)",
          "message": "federation.data.text.path reads from a mounted volume: set contribution.dataVolumeClaim to the PersistentVolumeClaim that holds the data",
          "fieldPath": ".contribution",
          "reason": "FieldValueRequired"
        },
        {
          "rule": "!has(self.contribution.localData) || has(self.contribution.dataVolumeClaim)",
          "message": "contribution.localData reads from a mounted volume: set contribution.dataVolumeClaim to the PersistentVolumeClaim that holds the data",
          "fieldPath": ".contribution",
          "reason": "FieldValueRequired"
        },
        {
          "rule": "!has(self.contribution.localData) || !has(self.federation.data.synthetic) || self.federation.data.synthetic.preset != 'GaussianClusters'",
          "message": "contribution.localData is text: it cannot stand in for GaussianClusters (classification) data",
          "fieldPath": ".contribution.localData"
        }
      ],
      "properties": {
        "suspend": {
          "type": "boolean",
          "default": false,
          "description": "Pause this member: its trainers stop after checkpointing and it stops contributing; the rest of the federation carries on. Set back to false to rejoin from the latest checkpoint."
        },
        "federation": {
          "type": "object",
          "description": "The shared part: identical in every member, usually from one Git base. The operator hashes its canonical form (status.federationSpecHash) and members co-train only when their hashes agree.",
          "required": [
            "id",
            "model",
            "data"
          ],
          "x-kubernetes-validations": [
            {
              "rule": "self.model.preset == 'MLP' ? has(self.data.synthetic) && self.data.synthetic.preset == 'GaussianClusters' : has(self.data.text) || self.data.synthetic.preset == 'Arithmetic'",
              "message": "the MLP preset trains on synthetic GaussianClusters data; the CharTransformer preset on synthetic Arithmetic or text data",
              "fieldPath": ".data"
            },
            {
              "rule": "self.membership.policy != 'Allowlist' || !has(self.sync.quorum.minMembers) || self.sync.quorum.minMembers <= size(self.membership.members)",
              "message": "sync.quorum.minMembers cannot be larger than the number of members in membership.members",
              "fieldPath": ".sync.quorum.minMembers"
            },
            {
              "rule": "self.training.innerOptimizer.warmupSteps <= self.training.rounds * self.training.innerSteps",
              "message": "training.innerOptimizer.warmupSteps cannot exceed the total number of inner steps (rounds × innerSteps)",
              "fieldPath": ".training.innerOptimizer.warmupSteps"
            },
            {
              "rule": "self.sync.checkpointEveryRounds <= self.training.rounds",
              "message": "sync.checkpointEveryRounds cannot exceed training.rounds",
              "fieldPath": ".sync.checkpointEveryRounds"
            }
          ],
          "properties": {
            "id": {
              "type": "string",
              "description": "The federation's name, shared by all members (a DNS label). Immutable: a different id is a different federation.",
              "minLength": 1,
              "maxLength": 63,
              "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
              "x-kubernetes-validations": [
                {
                  "rule": "self == oldSelf",
                  "message": "federation.id is immutable; create a new TrainingFederation to join another federation"
                }
              ]
            },
            "model": {
              "type": "object",
              "description": "The model all members train. Immutable: changing it would make the members' models incompatible.",
              "required": [
                "preset"
              ],
              "x-kubernetes-validations": [
                {
                  "rule": "self == oldSelf",
                  "message": "federation.model is immutable; start a new federation to train another model"
                },
                {
                  "rule": "!has(self.mlp) || self.preset == 'MLP'",
                  "message": "model.mlp may only be set when model.preset is MLP",
                  "fieldPath": ".mlp"
                },
                {
                  "rule": "!has(self.charTransformer) || self.preset == 'CharTransformer'",
                  "message": "model.charTransformer may only be set when model.preset is CharTransformer",
                  "fieldPath": ".charTransformer"
                }
              ],
              "properties": {
                "preset": {
                  "type": "string",
                  "description": "Built-in model architecture: MLP (a multi-layer perceptron classifier) or CharTransformer (a small decoder-only character-level language model).",
                  "enum": [
                    "MLP",
                    "CharTransformer"
                  ]
                },
                "mlp": {
                  "type": "object",
                  "description": "Settings of the MLP preset (defaults apply when omitted).",
                  "x-kubernetes-validations": [
                    {
                      "rule": "!has(self.hiddenLayers) || self.hiddenLayers.map(w, w * w).sum() <= 1000000000",
                      "message": "the MLP would have over 1,000,000,000 parameters (the sum of its hidden widths squared bounds the weights between them)",
                      "fieldPath": ".hiddenLayers"
                    }
                  ],
                  "properties": {
                    "hiddenLayers": {
                      "type": "array",
                      "description": "Width of each hidden layer, input side first.",
                      "default": [
                        128,
                        128
                      ],
                      "x-kubernetes-list-type": "atomic",
                      "minItems": 1,
                      "maxItems": 16,
                      "items": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 16384
                      }
                    },
                    "activation": {
                      "type": "string",
                      "description": "Activation function of the hidden layers.",
                      "enum": [
                        "ReLU",
                        "GELU",
                        "Tanh"
                      ],
                      "default": "ReLU"
                    }
                  }
                },
                "charTransformer": {
                  "type": "object",
                  "description": "Settings of the CharTransformer preset (defaults apply when omitted).",
                  "x-kubernetes-validations": [
                    {
                      "rule": "self.modelWidth % self.heads == 0",
                      "message": "charTransformer.modelWidth must be a multiple of charTransformer.heads",
                      "fieldPath": ".heads"
                    },
                    {
                      "rule": "self.layers * self.modelWidth * self.modelWidth * (4 + 2 * self.feedForwardMultiplier) <= 1000000000",
                      "message": "the CharTransformer would have over 1,000,000,000 parameters (layers × modelWidth² × (4 + 2 × feedForwardMultiplier)); every member holds it in memory several times over",
                      "fieldPath": ".layers"
                    }
                  ],
                  "properties": {
                    "layers": {
                      "type": "integer",
                      "description": "Number of transformer blocks.",
                      "minimum": 1,
                      "maximum": 48,
                      "default": 2
                    },
                    "modelWidth": {
                      "type": "integer",
                      "description": "Width of the residual stream (d_model).",
                      "minimum": 8,
                      "maximum": 8192,
                      "default": 128
                    },
                    "heads": {
                      "type": "integer",
                      "description": "Attention heads per block; modelWidth must be a multiple of it.",
                      "minimum": 1,
                      "maximum": 128,
                      "default": 4
                    },
                    "contextLength": {
                      "type": "integer",
                      "description": "Characters of context the model attends to.",
                      "minimum": 8,
                      "maximum": 4096,
                      "default": 64
                    },
                    "feedForwardMultiplier": {
                      "type": "integer",
                      "description": "Width of the feed-forward layer as a multiple of modelWidth.",
                      "minimum": 1,
                      "maximum": 16,
                      "default": 4
                    }
                  }
                }
              }
            },
            "data": {
              "type": "object",
              "description": "Where the training data comes from: exactly one of synthetic (built in, deterministic from training.seed, no download), corpus (real text shipped with the trainer, no download) or text (a URL or a file on a volume). Each worker trains on its own disjoint shard of it (see sharding), or on its member's own data (contribution.localData); the evaluation set is always this data's held-out part, the same for every member.",
              "x-kubernetes-validations": [
                {
                  "rule": "(has(self.synthetic) ? 1 : 0) + (has(self.corpus) ? 1 : 0) + (has(self.text) ? 1 : 0) == 1",
                  "message": "set exactly one of data.synthetic, data.corpus and data.text"
                }
              ],
              "properties": {
                "synthetic": {
                  "type": "object",
                  "description": "A built-in synthetic dataset generated from training.seed.",
                  "required": [
                    "preset"
                  ],
                  "properties": {
                    "preset": {
                      "type": "string",
                      "description": "GaussianClusters (classification, for the MLP) or Arithmetic (text of small sums and products, for the CharTransformer).",
                      "enum": [
                        "GaussianClusters",
                        "Arithmetic"
                      ]
                    },
                    "trainExamples": {
                      "type": "integer",
                      "description": "Training examples generated in total, split across workers.",
                      "minimum": 1,
                      "maximum": 100000000,
                      "default": 20000
                    },
                    "evalExamples": {
                      "type": "integer",
                      "description": "Held-out examples for evaluation, the same on every member.",
                      "minimum": 1,
                      "maximum": 1000000,
                      "default": 2000
                    },
                    "features": {
                      "type": "integer",
                      "description": "Input features per example (GaussianClusters).",
                      "minimum": 1,
                      "maximum": 65536,
                      "default": 32
                    },
                    "classes": {
                      "type": "integer",
                      "description": "Number of classes (GaussianClusters).",
                      "minimum": 2,
                      "maximum": 10000,
                      "default": 10
                    },
                    "noise": {
                      "type": "number",
                      "description": "Standard deviation of the noise around each class centre (GaussianClusters).",
                      "minimum": 0,
                      "maximum": 100,
                      "default": 1
                    },
                    "maxOperand": {
                      "type": "integer",
                      "description": "Largest operand in generated expressions (Arithmetic).",
                      "minimum": 1,
                      "maximum": 1000000,
                      "default": 99
                    }
                  }
                },
                "corpus": {
                  "type": "object",
                  "description": "A built-in corpus of real text that ships with the trainer (no download at run time), with a fixed held-out split.",
                  "required": [
                    "preset"
                  ],
                  "properties": {
                    "preset": {
                      "type": "string",
                      "description": "BrownCorpus: the Brown corpus of edited American English (500 samples, about 1M words, 1961), part-of-speech tags stripped to plain text; every 20th sample in file order (ca20, ca40, cb16, ...: 25 samples, 5 %) is held out for evaluation.",
                      "enum": [
                        "BrownCorpus"
                      ]
                    },
                    "encoding": {
                      "type": "string",
                      "description": "Character (one token per character; the vocabulary is the corpus's distinct characters) or Byte (one token per UTF-8 byte, 256 tokens).",
                      "enum": [
                        "Character",
                        "Byte"
                      ],
                      "default": "Character"
                    }
                  }
                },
                "text": {
                  "type": "object",
                  "description": "Text or JSONL training data, read from a URL or from a file on the volume that contribution.dataVolumeClaim mounts at /data.",
                  "x-kubernetes-validations": [
                    {
                      "rule": "has(self.url) != has(self.path)",
                      "message": "set exactly one of data.text.url and data.text.path"
                    },
                    {
                      "rule": "!has(self.field) || self.format == 'JSONL'",
                      "message": "data.text.field only applies to the JSONL format",
                      "fieldPath": ".field"
                    }
                  ],
                  "required": [
                    "format"
                  ],
                  "properties": {
                    "format": {
                      "type": "string",
                      "description": "Text (one document, split into examples) or JSONL (one JSON object per line).",
                      "enum": [
                        "Text",
                        "JSONL"
                      ]
                    },
                    "url": {
                      "type": "string",
                      "description": "An https URL to download the data from, on a public host (not localhost, a cluster-internal name or a private, loopback or link-local address: the trainer must not be a way into the member's network).",
                      "maxLength": 2048,
                      "pattern": "^https://[^\\s]+$",
                      "x-kubernetes-validations": [
                        {
                          "rule": "!self.lowerAscii().matches('^https://([^/?#@]*@)?(localhost|metadata|[^/?#:]*[.](local|localdomain|internal|svc|cluster[.]local|localhost))[.]?([:/?#]|$)')",
                          "message": "data.text.url must name a public host, not localhost or a cluster-internal name"
                        },
                        {
                          "rule": "!self.lowerAscii().matches('^https://([^/?#@]*@)?((0|10|127)([.][0-9]+){0,3}|169[.]254[.][0-9.]*|192[.]168[.][0-9.]*|172[.](1[6-9]|2[0-9]|3[01])[.][0-9.]*|100[.](6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])[.][0-9.]*|[0-9]+|0x[0-9a-fx.]*|[[][^/?#]*)([:/?#]|$)')",
                          "message": "data.text.url must not be a private, loopback, link-local or numeric-only address, nor an IPv6 literal"
                        }
                      ]
                    },
                    "path": {
                      "type": "string",
                      "description": "A path relative to /data, the mount point of contribution.dataVolumeClaim.",
                      "minLength": 1,
                      "maxLength": 1024,
                      "x-kubernetes-validations": [
                        {
                          "rule": "!self.startsWith('/') && !self.contains('..')",
                          "message": "data.text.path must be relative to /data and may not contain '..'"
                        }
                      ]
                    },
                    "field": {
                      "type": "string",
                      "description": "The JSONL field that holds the text (default \"text\").",
                      "minLength": 1,
                      "maxLength": 256
                    },
                    "evalFraction": {
                      "type": "number",
                      "description": "Fraction of the text held out for evaluation.",
                      "minimum": 0.001,
                      "maximum": 0.5,
                      "default": 0.05
                    }
                  }
                },
                "sharding": {
                  "type": "object",
                  "description": "How the training data is split across workers.",
                  "default": {},
                  "properties": {
                    "strategy": {
                      "type": "string",
                      "description": "How the examples are dealt to the federation's workers, which are named by the previous round's commit (every member computes the same deal): IID (every worker sees the same distribution) or NonIID (each worker's label or task mix is drawn from a Dirichlet distribution).",
                      "enum": [
                        "IID",
                        "NonIID"
                      ],
                      "default": "IID"
                    },
                    "concentration": {
                      "type": "number",
                      "description": "Dirichlet concentration for NonIID; smaller is more skewed.",
                      "minimum": 0.01,
                      "maximum": 1000,
                      "default": 0.5
                    }
                  }
                }
              }
            },
            "training": {
              "type": "object",
              "description": "The schedule and the two optimisers of DiLoCo.",
              "default": {},
              "properties": {
                "rounds": {
                  "type": "integer",
                  "description": "Outer rounds (synchronisations) of the whole run.",
                  "minimum": 1,
                  "maximum": 1000000,
                  "default": 100
                },
                "innerSteps": {
                  "type": "integer",
                  "description": "Inner optimiser steps each worker takes between synchronisations (H).",
                  "minimum": 1,
                  "maximum": 1000000,
                  "default": 100
                },
                "batchSize": {
                  "type": "integer",
                  "description": "Examples per inner step on each worker.",
                  "minimum": 1,
                  "maximum": 65536,
                  "default": 32
                },
                "seed": {
                  "type": "integer",
                  "format": "int64",
                  "description": "Seed of model initialisation and synthetic data; identical results on every member.",
                  "minimum": 0,
                  "maximum": 9007199254740991,
                  "default": 0
                },
                "innerOptimizer": {
                  "type": "object",
                  "description": "AdamW, run locally by every worker for innerSteps steps.",
                  "default": {},
                  "properties": {
                    "learningRate": {
                      "type": "number",
                      "description": "Peak learning rate.",
                      "exclusiveMinimum": true,
                      "minimum": 0,
                      "maximum": 10,
                      "default": 0.001
                    },
                    "weightDecay": {
                      "type": "number",
                      "description": "Decoupled weight decay.",
                      "minimum": 0,
                      "maximum": 1,
                      "default": 0.01
                    },
                    "warmupSteps": {
                      "type": "integer",
                      "description": "Inner steps of linear learning-rate warm-up at the start of the run.",
                      "minimum": 0,
                      "maximum": 100000000,
                      "default": 0
                    },
                    "schedule": {
                      "type": "string",
                      "description": "Learning-rate decay after warm-up over the run's rounds × innerSteps inner steps: Cosine (half a cosine, as in DiLoCo), Linear, or Constant.",
                      "enum": [
                        "Cosine",
                        "Linear",
                        "Constant"
                      ],
                      "default": "Cosine"
                    },
                    "finalLearningRateRatio": {
                      "type": "number",
                      "description": "The learning rate at the end of the decay, as a fraction of the peak.",
                      "minimum": 0,
                      "maximum": 1,
                      "default": 0.1
                    },
                    "beta1": {
                      "type": "number",
                      "description": "Exponential decay of the first moment.",
                      "minimum": 0,
                      "exclusiveMaximum": true,
                      "maximum": 1,
                      "default": 0.9
                    },
                    "beta2": {
                      "type": "number",
                      "description": "Exponential decay of the second moment.",
                      "minimum": 0,
                      "exclusiveMaximum": true,
                      "maximum": 1,
                      "default": 0.999
                    }
                  }
                },
                "outerOptimizer": {
                  "type": "object",
                  "description": "SGD applied to the aggregated pseudo-gradient once per round (DiLoCo uses lr 0.7, Nesterov momentum 0.9).",
                  "default": {},
                  "properties": {
                    "learningRate": {
                      "type": "number",
                      "description": "Outer learning rate.",
                      "exclusiveMinimum": true,
                      "minimum": 0,
                      "maximum": 10,
                      "default": 0.7
                    },
                    "momentum": {
                      "type": "number",
                      "description": "Momentum coefficient.",
                      "minimum": 0,
                      "exclusiveMaximum": true,
                      "maximum": 1,
                      "default": 0.9
                    },
                    "nesterov": {
                      "type": "boolean",
                      "description": "Use Nesterov momentum.",
                      "default": true
                    }
                  }
                }
              }
            },
            "sync": {
              "type": "object",
              "description": "How workers exchange and combine their updates each round.",
              "default": {},
              "properties": {
                "compression": {
                  "type": "object",
                  "description": "How pseudo-gradients are compressed before they are sent.",
                  "default": {},
                  "x-kubernetes-validations": [
                    {
                      "rule": "!has(self.int8) || self.method == 'Int8'",
                      "message": "compression.int8 may only be set when compression.method is Int8",
                      "fieldPath": ".int8"
                    },
                    {
                      "rule": "!has(self.topK) || self.method == 'TopK'",
                      "message": "compression.topK may only be set when compression.method is TopK",
                      "fieldPath": ".topK"
                    }
                  ],
                  "properties": {
                    "method": {
                      "type": "string",
                      "description": "None (dense fp32), Int8 (dense int8 with a per-chunk scale) or TopK (the largest entries only, with low-bit values and error feedback).",
                      "enum": [
                        "None",
                        "Int8",
                        "TopK"
                      ],
                      "default": "Int8"
                    },
                    "int8": {
                      "type": "object",
                      "description": "Settings of the Int8 method (defaults apply when omitted).",
                      "properties": {
                        "chunkSize": {
                          "type": "integer",
                          "description": "Values that share one fp32 scale.",
                          "minimum": 16,
                          "maximum": 1048576,
                          "default": 4096
                        }
                      }
                    },
                    "topK": {
                      "type": "object",
                      "description": "Settings of the TopK method (defaults apply when omitted).",
                      "x-kubernetes-validations": [
                        {
                          "rule": "self.density > 0.0 && self.density <= 1.0",
                          "message": "compression.topK.density must be in (0, 1]",
                          "fieldPath": ".density"
                        },
                        {
                          "rule": "self.valueBits in [2, 4, 8]",
                          "message": "compression.topK.valueBits must be 2, 4 or 8",
                          "fieldPath": ".valueBits"
                        }
                      ],
                      "properties": {
                        "density": {
                          "type": "number",
                          "description": "Fraction of entries sent each round, in (0, 1].",
                          "default": 0.02
                        },
                        "valueBits": {
                          "type": "integer",
                          "description": "Bits per sent value (2, 4 or 8).",
                          "default": 4
                        },
                        "errorFeedback": {
                          "type": "boolean",
                          "description": "Carry what was not sent into the next round (recommended).",
                          "default": true
                        }
                      }
                    }
                  }
                },
                "aggregation": {
                  "type": "object",
                  "description": "How the round's updates are combined; robust rules resist poisoned or broken members.",
                  "default": {},
                  "x-kubernetes-validations": [
                    {
                      "rule": "!has(self.trimFraction) || self.rule == 'TrimmedMean'",
                      "message": "aggregation.trimFraction may only be set when aggregation.rule is TrimmedMean",
                      "fieldPath": ".trimFraction"
                    },
                    {
                      "rule": "!has(self.centredClip) || self.rule == 'CentredClip'",
                      "message": "aggregation.centredClip may only be set when aggregation.rule is CentredClip",
                      "fieldPath": ".centredClip"
                    },
                    {
                      "rule": "!has(self.tolerate) || self.rule != 'Mean'",
                      "message": "aggregation.tolerate cannot be set with rule Mean, which withstands no faulty member: choose TrimmedMean, Median or CentredClip",
                      "fieldPath": ".tolerate"
                    },
                    {
                      "rule": "!(has(self.tolerate) && has(self.trimFraction))",
                      "message": "set at most one of aggregation.tolerate and aggregation.trimFraction: both say how many updates a TrimmedMean trims",
                      "fieldPath": ".trimFraction"
                    }
                  ],
                  "properties": {
                    "rule": {
                      "type": "string",
                      "description": "Mean, TrimmedMean (drop the largest and smallest values of each coordinate), Median (coordinate-wise) or CentredClip (clip each update's distance to a running centre).",
                      "enum": [
                        "Mean",
                        "TrimmedMean",
                        "Median",
                        "CentredClip"
                      ],
                      "default": "Mean"
                    },
                    "tolerate": {
                      "type": "integer",
                      "description": "The protection the organiser states: how many faulty updates every round must withstand. TrimmedMean trims this many values at each end of every coordinate; Median and CentredClip need no setting but state it here to be checked. A round with fewer than 2 × tolerate + 1 updates cannot give it: it is still applied, and flagged (trainer log line and metric fedtrain_trainer_rounds_unprotected_total).",
                      "minimum": 1,
                      "maximum": 100
                    },
                    "trimFraction": {
                      "type": "number",
                      "description": "TrimmedMean without tolerate: the fraction of each round's updates to withstand, rounded up (⌈trimFraction × N⌉ values trimmed at each end of every coordinate; default 0.2); a round too small to trim that many is flagged as with tolerate.",
                      "x-kubernetes-validations": [
                        {
                          "rule": "self > 0.0 && self < 0.5",
                          "message": "aggregation.trimFraction must be above 0 (a trimmed mean that trims nothing is the mean) and below 0.5"
                        }
                      ]
                    },
                    "centredClip": {
                      "type": "object",
                      "description": "Settings of CentredClip (defaults apply when omitted). Each round starts from the previous round's aggregate (kept in checkpoints).",
                      "x-kubernetes-validations": [
                        {
                          "rule": "!(has(self.radius) && has(self.radiusMedianMultiple))",
                          "message": "set at most one of centredClip.radius and centredClip.radiusMedianMultiple",
                          "fieldPath": ".radius"
                        }
                      ],
                      "properties": {
                        "radius": {
                          "type": "number",
                          "description": "An absolute clipping radius: the largest L2 distance from the centre an update may pull with.",
                          "exclusiveMinimum": true,
                          "minimum": 0
                        },
                        "radiusMedianMultiple": {
                          "type": "number",
                          "description": "The clipping radius as a multiple of the median L2 distance of the round's updates from the previous aggregate: relative to the honest spread, whatever the updates' scale (default 2 when radius is not set).",
                          "exclusiveMinimum": true,
                          "minimum": 0,
                          "maximum": 100
                        },
                        "iterations": {
                          "type": "integer",
                          "description": "Clipping iterations.",
                          "minimum": 1,
                          "maximum": 20,
                          "default": 3
                        }
                      }
                    },
                    "normBound": {
                      "type": "object",
                      "description": "Drop or clip updates whose L2 norm is out of bounds, before aggregation; recorded per member.",
                      "x-kubernetes-validations": [
                        {
                          "rule": "has(self.maxNorm) != has(self.maxMedianMultiple)",
                          "message": "set exactly one of normBound.maxNorm and normBound.maxMedianMultiple"
                        }
                      ],
                      "properties": {
                        "action": {
                          "type": "string",
                          "description": "Drop the update, or Clip it to the bound.",
                          "enum": [
                            "Drop",
                            "Clip"
                          ],
                          "default": "Clip"
                        },
                        "maxNorm": {
                          "type": "number",
                          "description": "An absolute bound on an update's L2 norm.",
                          "exclusiveMinimum": true,
                          "minimum": 0
                        },
                        "maxMedianMultiple": {
                          "type": "number",
                          "description": "A bound relative to the round's median update norm.",
                          "minimum": 1,
                          "maximum": 1000
                        }
                      }
                    }
                  }
                },
                "quorum": {
                  "type": "object",
                  "description": "When a round may close: with at least minMembers members and at least fraction of the active members having contributed (both when both are set).",
                  "default": {
                    "minMembers": 1
                  },
                  "x-kubernetes-validations": [
                    {
                      "rule": "has(self.minMembers) || has(self.fraction)",
                      "message": "set quorum.minMembers, quorum.fraction, or both"
                    }
                  ],
                  "properties": {
                    "minMembers": {
                      "type": "integer",
                      "description": "The fewest members whose updates a round needs.",
                      "minimum": 1,
                      "maximum": 1024
                    },
                    "fraction": {
                      "type": "number",
                      "description": "The smallest fraction of active members whose updates a round needs, in (0, 1].",
                      "x-kubernetes-validations": [
                        {
                          "rule": "self > 0.0 && self <= 1.0",
                          "message": "quorum.fraction must be in (0, 1]"
                        }
                      ]
                    }
                  }
                },
                "roundDeadlineSeconds": {
                  "type": "integer",
                  "description": "Seconds after a round opens until the coordinator closes it with whatever quorum it has.",
                  "minimum": 1,
                  "maximum": 86400,
                  "default": 300
                },
                "overlap": {
                  "type": "boolean",
                  "description": "Start the next round's inner steps while this round is exchanged, applying it one round late.",
                  "default": false
                },
                "checkpointEveryRounds": {
                  "type": "integer",
                  "description": "Rounds between checkpoints of the global model to the object store.",
                  "minimum": 1,
                  "maximum": 1000000,
                  "default": 10
                }
              }
            },
            "membership": {
              "type": "object",
              "description": "Who may contribute to the federation.",
              "default": {},
              "x-kubernetes-validations": [
                {
                  "rule": "!has(self.policy) || self.policy != 'Allowlist' || has(self.members) && size(self.members) > 0",
                  "message": "the Allowlist policy needs at least one entry in membership.members",
                  "fieldPath": ".members"
                },
                {
                  "rule": "!has(self.members) || self.members.all(m, self.members.exists_one(n, n.publicKey == m.publicKey))",
                  "message": "each public key may appear only once in membership.members",
                  "fieldPath": ".members"
                }
              ],
              "properties": {
                "policy": {
                  "type": "string",
                  "description": "Open (any member with a matching spec hash) or Allowlist (only the keys in members).",
                  "enum": [
                    "Open",
                    "Allowlist"
                  ],
                  "default": "Open"
                },
                "members": {
                  "type": "array",
                  "description": "Members admitted under the Allowlist policy, each with its Ed25519 public key.",
                  "default": [],
                  "maxItems": 256,
                  "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": [
                    "id"
                  ],
                  "items": {
                    "type": "object",
                    "description": "One admitted member.",
                    "required": [
                      "id",
                      "publicKey"
                    ],
                    "properties": {
                      "id": {
                        "type": "string",
                        "description": "The member id (a DNS label), as in that member's contribution.memberId.",
                        "maxLength": 63,
                        "x-kubernetes-validations": [
                          {
                            "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                            "message": "member id must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
                          }
                        ]
                      },
                      "publicKey": {
                        "type": "string",
                        "description": "The member's Ed25519 public key, base64 (44 characters), as shown in its status.publicKey.",
                        "maxLength": 64,
                        "x-kubernetes-validations": [
                          {
                            "rule": "size(self) == 44 && self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')",
                            "message": "publicKey must be a canonical base64-encoded 32-byte Ed25519 key (44 characters ending in '=', the last bits before it zero), as fedtrain prints it"
                          }
                        ]
                      }
                    }
                  }
                },
                "organiserKeys": {
                  "type": "array",
                  "description": "Ed25519 public keys (base64) whose signed control messages (fedtrain control) may pause and resume the whole federation, and exclude or readmit a member.",
                  "default": [],
                  "maxItems": 16,
                  "x-kubernetes-list-type": "set",
                  "items": {
                    "type": "string",
                    "maxLength": 64,
                    "x-kubernetes-validations": [
                      {
                        "rule": "size(self) == 44 && self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')",
                        "message": "organiser key must be a canonical base64-encoded 32-byte Ed25519 key (44 characters ending in '=', the last bits before it zero), as fedtrain prints it"
                      }
                    ]
                  }
                }
              }
            }
          }
        },
        "contribution": {
          "type": "object",
          "description": "The local part: what this cluster contributes. Changing replicas is elastic: workers come and go between rounds.",
          "default": {},
          "x-kubernetes-validations": [
            {
              "rule": "!has(self.backend) || self.backend in ['Auto', 'CPU'] || has(self.gpusPerReplica) && self.gpusPerReplica > 0",
              "message": "the CUDA and WebGPU backends need contribution.gpusPerReplica of at least 1",
              "fieldPath": ".gpusPerReplica"
            },
            {
              "rule": "!has(oldSelf.memberId) || has(self.memberId)",
              "message": "contribution.memberId is immutable: a member's identity cannot change while it is in the federation (it cannot be removed either)",
              "fieldPath": ".memberId",
              "reason": "FieldValueForbidden"
            }
          ],
          "properties": {
            "memberId": {
              "type": "string",
              "description": "This cluster's id in the federation (a DNS label). Defaults to the operator's cluster id.",
              "maxLength": 63,
              "x-kubernetes-validations": [
                {
                  "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                  "message": "memberId must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"
                },
                {
                  "rule": "self == oldSelf",
                  "message": "contribution.memberId is immutable: a member's identity cannot change while it is in the federation"
                }
              ]
            },
            "replicas": {
              "type": "integer",
              "description": "Trainer workers this cluster runs (0 keeps the membership without training).",
              "minimum": 0,
              "maximum": 1024,
              "default": 1
            },
            "gpusPerReplica": {
              "type": "integer",
              "description": "GPUs each worker requests.",
              "minimum": 0,
              "maximum": 64,
              "default": 1
            },
            "gpuResourceName": {
              "type": "string",
              "description": "Extended resource name of the GPUs to request.",
              "maxLength": 253,
              "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
              "default": "nvidia.com/gpu"
            },
            "backend": {
              "type": "string",
              "description": "Compute backend of the trainers: Auto (the best that loads), CUDA (tfjs-node-gpu), WebGPU (Dawn over Vulkan) or CPU (native, else WASM).",
              "enum": [
                "Auto",
                "CUDA",
                "WebGPU",
                "CPU"
              ],
              "default": "Auto"
            },
            "image": {
              "type": "string",
              "description": "Trainer image; defaults to the operator's configured trainer image.",
              "maxLength": 1024
            },
            "imagePullPolicy": {
              "type": "string",
              "description": "Pull policy of the trainer image.",
              "enum": [
                "Always",
                "IfNotPresent",
                "Never"
              ]
            },
            "resources": {
              "type": "object",
              "description": "CPU and memory requests and limits of each trainer (GPUs come from gpusPerReplica).",
              "properties": {
                "requests": {
                  "type": "object",
                  "description": "Minimum resources each trainer needs, as Kubernetes quantities.",
                  "maxProperties": 16,
                  "additionalProperties": {
                    "anyOf": [
                      {
                        "type": "integer"
                      },
                      {
                        "type": "string"
                      }
                    ],
                    "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
                    "x-kubernetes-int-or-string": true
                  }
                },
                "limits": {
                  "type": "object",
                  "description": "Maximum resources each trainer may use, as Kubernetes quantities.",
                  "maxProperties": 16,
                  "additionalProperties": {
                    "anyOf": [
                      {
                        "type": "integer"
                      },
                      {
                        "type": "string"
                      }
                    ],
                    "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
                    "x-kubernetes-int-or-string": true
                  }
                }
              }
            },
            "nodeSelector": {
              "type": "object",
              "description": "Node labels a trainer's node must have.",
              "maxProperties": 64,
              "x-kubernetes-validations": [
                {
                  "rule": "self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
                  "message": "nodeSelector keys must be label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.'"
                }
              ],
              "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
              }
            },
            "tolerations": {
              "type": "array",
              "description": "Tolerations of the trainer pods, for example of a GPU node taint.",
              "maxItems": 32,
              "x-kubernetes-list-type": "atomic",
              "items": {
                "type": "object",
                "description": "A toleration, as in a Pod spec.",
                "x-kubernetes-validations": [
                  {
                    "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "message": "a toleration with operator Exists takes no value",
                    "fieldPath": ".value"
                  },
                  {
                    "rule": "has(self.key) && self.key != '' || has(self.operator) && self.operator == 'Exists'",
                    "message": "a toleration without a key must use operator Exists (it then matches every taint)",
                    "fieldPath": ".operator"
                  },
                  {
                    "rule": "!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
                    "message": "tolerationSeconds applies only to the NoExecute effect",
                    "fieldPath": ".tolerationSeconds"
                  },
                  {
                    "rule": "!has(self.key) || self.key == '' || self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')",
                    "message": "a toleration key must be a label key",
                    "fieldPath": ".key"
                  }
                ],
                "properties": {
                  "key": {
                    "type": "string",
                    "description": "The taint key the toleration applies to; empty matches all keys.",
                    "maxLength": 317
                  },
                  "operator": {
                    "type": "string",
                    "description": "Exists or Equal (default Equal).",
                    "enum": [
                      "Exists",
                      "Equal"
                    ]
                  },
                  "value": {
                    "type": "string",
                    "description": "The taint value the toleration matches (Equal only).",
                    "maxLength": 63,
                    "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
                  },
                  "effect": {
                    "type": "string",
                    "description": "The taint effect to match; empty matches all effects.",
                    "enum": [
                      "NoSchedule",
                      "PreferNoSchedule",
                      "NoExecute"
                    ]
                  },
                  "tolerationSeconds": {
                    "type": "integer",
                    "format": "int64",
                    "description": "How long a NoExecute taint is tolerated before eviction.",
                    "minimum": -9007199254740991,
                    "maximum": 9007199254740991
                  }
                }
              }
            },
            "priorityClassName": {
              "type": "string",
              "description": "PriorityClass of the trainer pods.",
              "maxLength": 253,
              "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "serviceAccountName": {
              "type": "string",
              "description": "ServiceAccount the trainer pods run as (they need no Kubernetes API access).",
              "maxLength": 253,
              "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "queueName": {
              "type": "string",
              "description": "A Kueue LocalQueue in this namespace: the trainer Job is labelled kueue.x-k8s.io/queue-name and Kueue admits it against the queue's quota (the operator then never sets the Job's spec.suspend, which Kueue owns). Suspending this member, or replicas 0, deletes the Job, releasing the quota; resuming queues a new one.",
              "maxLength": 253,
              "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "scratchSize": {
              "type": "string",
              "description": "Size limit of each trainer's scratch space (an emptyDir on the node's disk, for downloaded data and local checkpoints), as a Kubernetes quantity of at most 1Ti; a trainer that writes more is evicted.",
              "default": "4Gi",
              "maxLength": 32,
              "x-kubernetes-validations": [
                {
                  "rule": "isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('1Ti')) <= 0",
                  "message": "scratchSize must be a quantity above 0 and at most 1Ti, e.g. 4Gi"
                }
              ]
            },
            "dataVolumeClaim": {
              "type": "string",
              "description": "A PersistentVolumeClaim mounted read-only at /data, for federation.data.text.path and localData.path.",
              "maxLength": 253,
              "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "localData": {
              "type": "object",
              "description": "This member's own training data, read from the volume that dataVolumeClaim mounts at /data: its workers train on it (split among them) instead of on a shard of federation.data, whose held-out part stays the shared evaluation set. It never leaves the cluster: only compressed pseudo-gradients do. Needs text data in the federation's vocabulary (characters outside it are skipped and counted).",
              "required": [
                "format",
                "path"
              ],
              "x-kubernetes-validations": [
                {
                  "rule": "!has(self.field) || self.format == 'JSONL'",
                  "message": "contribution.localData.field only applies to the JSONL format",
                  "fieldPath": ".field"
                }
              ],
              "properties": {
                "format": {
                  "type": "string",
                  "description": "Text (one document) or JSONL (one JSON object per line).",
                  "enum": [
                    "Text",
                    "JSONL"
                  ]
                },
                "path": {
                  "type": "string",
                  "description": "A path relative to /data, the mount point of dataVolumeClaim.",
                  "minLength": 1,
                  "maxLength": 1024,
                  "x-kubernetes-validations": [
                    {
                      "rule": "!self.startsWith('/') && !self.contains('..')",
                      "message": "contribution.localData.path must be relative to /data and may not contain '..'"
                    }
                  ]
                },
                "field": {
                  "type": "string",
                  "description": "The JSONL field that holds the text (default \"text\").",
                  "minLength": 1,
                  "maxLength": 256
                }
              }
            }
          }
        },
        "transport": {
          "type": "object",
          "description": "The local part: how this cluster reaches the federation's NATS. Defaults to the operator's configured connection.",
          "properties": {
            "natsUrls": {
              "type": "array",
              "description": "NATS server URLs (nats://, tls://, ws:// or wss://); the client fails over between them.",
              "minItems": 1,
              "maxItems": 16,
              "x-kubernetes-list-type": "atomic",
              "items": {
                "type": "string",
                "maxLength": 1024,
                "pattern": "^(nats|tls|ws|wss)://[^\\s]+$"
              }
            },
            "credentialsSecretRef": {
              "type": "object",
              "description": "A Secret in this namespace whose key nats.creds holds the NATS user credentials.",
              "required": [
                "name"
              ],
              "properties": {
                "name": {
                  "type": "string",
                  "description": "Name of the Secret.",
                  "maxLength": 253
                }
              }
            },
            "tlsSecretRef": {
              "type": "object",
              "description": "A Secret in this namespace with ca.crt (and tls.crt, tls.key for mutual TLS).",
              "required": [
                "name"
              ],
              "properties": {
                "name": {
                  "type": "string",
                  "description": "Name of the Secret.",
                  "maxLength": 253
                }
              }
            }
          }
        }
      }
    },
    "status": {
      "type": "object",
      "description": "The federation as seen from this member, written by the operator.",
      "properties": {
        "observedGeneration": {
          "type": "integer",
          "format": "int64",
          "description": "The metadata.generation this status describes."
        },
        "conditions": {
          "type": "array",
          "description": "Ready summarises; Valid, Joined, TrainersReady, Synced and Degraded say why.",
          "maxItems": 16,
          "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": [
            "type"
          ],
          "items": {
            "type": "object",
            "description": "One aspect of this member's state, in the standard Kubernetes condition shape.",
            "required": [
              "type",
              "status",
              "lastTransitionTime",
              "reason",
              "message"
            ],
            "properties": {
              "type": {
                "type": "string",
                "description": "The aspect this condition describes, in CamelCase.",
                "maxLength": 316,
                "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
              },
              "status": {
                "type": "string",
                "description": "True, False or Unknown.",
                "enum": [
                  "True",
                  "False",
                  "Unknown"
                ]
              },
              "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The metadata.generation the condition was computed from.",
                "minimum": 0
              },
              "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed."
              },
              "reason": {
                "type": "string",
                "description": "A CamelCase reason for the last transition.",
                "minLength": 1,
                "maxLength": 1024,
                "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
              },
              "message": {
                "type": "string",
                "description": "A human-readable explanation.",
                "maxLength": 32768
              }
            }
          }
        },
        "phase": {
          "type": "string",
          "description": "A one-word summary derived from observation: Pending, Training, Suspended, Completed, Failed or Invalid.",
          "enum": [
            "Pending",
            "Training",
            "Suspended",
            "Completed",
            "Failed",
            "Invalid"
          ]
        },
        "federationSpecHash": {
          "type": "string",
          "description": "sha256 of the canonical form of spec.federation; members co-train only when it agrees."
        },
        "memberId": {
          "type": "string",
          "description": "This member's id (spec.contribution.memberId, else the operator's cluster id)."
        },
        "publicKey": {
          "type": "string",
          "description": "This member's Ed25519 public key (base64), to submit to the federation's allowlist."
        },
        "round": {
          "type": "integer",
          "format": "int64",
          "description": "The latest round committed by the federation."
        },
        "rounds": {
          "type": "integer",
          "format": "int64",
          "description": "The rounds of the whole run (spec.federation.training.rounds)."
        },
        "progress": {
          "type": "string",
          "description": "Round progress for display, \"round/rounds\"."
        },
        "activeMembers": {
          "type": "integer",
          "description": "Members that contributed to the latest round."
        },
        "members": {
          "type": "array",
          "description": "The federation's members as seen from here.",
          "maxItems": 256,
          "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": [
            "id"
          ],
          "items": {
            "type": "object",
            "description": "One member of the federation.",
            "required": [
              "id",
              "state"
            ],
            "properties": {
              "id": {
                "type": "string",
                "description": "The member id."
              },
              "state": {
                "type": "string",
                "description": "Active (heartbeating and contributing), Joining, Stale (missed heartbeats), Left, Refused (spec hash or key not admitted), or Excluded (by an organiser's signed control message: no coordinator commits its updates until it is readmitted).",
                "enum": [
                  "Active",
                  "Joining",
                  "Stale",
                  "Left",
                  "Refused",
                  "Excluded"
                ]
              },
              "reason": {
                "type": "string",
                "description": "Why the member is in this state, when it is not Active."
              },
              "trainers": {
                "type": "integer",
                "description": "Trainer workers this member runs."
              },
              "lastHeartbeat": {
                "type": "string",
                "format": "date-time",
                "description": "When this member last announced itself."
              },
              "roundsContributed": {
                "type": "integer",
                "format": "int64",
                "description": "Rounds whose commit included an update of this member."
              },
              "updatesClipped": {
                "type": "integer",
                "format": "int64",
                "description": "Updates of this member that the norm bound (spec.federation.sync.aggregation.normBound) scaled down onto the bound, as counted by the workers since they started (the highest count any admitted worker reports)."
              },
              "updatesDropped": {
                "type": "integer",
                "format": "int64",
                "description": "Updates of this member that the norm bound left out of the aggregate, as counted by the workers since they started (the highest count any admitted worker reports)."
              },
              "updateCosine": {
                "type": "number",
                "description": "Cosine between this member's update and the aggregate of the last round scored (the lowest of its updates); every worker computes the same. An attacker's is often negative. Rounded to 3 decimals."
              },
              "reputation": {
                "type": "number",
                "description": "That cosine averaged over the rounds scored, exponentially (weight 0.2 on the newest round), as the admitted worker that scored the member over the most rounds reports it; kept after the workers leave. Rounded to 3 decimals."
              }
            }
          }
        },
        "trainers": {
          "type": "object",
          "description": "This member's trainer workers.",
          "properties": {
            "desired": {
              "type": "integer",
              "description": "Workers that should run (spec.contribution.replicas, or 0 when suspended)."
            },
            "ready": {
              "type": "integer",
              "description": "Workers running and ready."
            }
          }
        },
        "trainersReady": {
          "type": "string",
          "description": "Trainers ready out of desired, for display, \"ready/desired\"."
        },
        "loss": {
          "type": "number",
          "description": "The latest training loss reported by this member's workers."
        },
        "evalLoss": {
          "type": "number",
          "description": "Evaluation loss of the global model after the latest round."
        },
        "bytesSentPerRound": {
          "type": "integer",
          "format": "int64",
          "description": "Bytes this member's workers sent in the latest round."
        },
        "compressionRatio": {
          "type": "number",
          "description": "Dense fp32 size of an update divided by its compressed size."
        },
        "lastCheckpoint": {
          "type": "object",
          "description": "The latest checkpoint of the global model in the object store.",
          "properties": {
            "round": {
              "type": "integer",
              "format": "int64",
              "description": "The round the checkpoint was taken after."
            },
            "digest": {
              "type": "string",
              "description": "sha256 digest of the checkpoint, as recorded in the ledger."
            }
          }
        }
      }
    }
  }
} as const;
