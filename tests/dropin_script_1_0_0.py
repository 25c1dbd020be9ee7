"""A script written against PyPI fico-itr 1.0.0, run unchanged by tests/test_dropin.py under 1.0.0 and under this package.

Its calls are those of 1.0.0's README (Quick Start and Usage Guide 1-4) and of its paper tutorial
(paper_tutorial/FiCo-Tutorial.ipynb cases 1-4 and the complete evaluation, paper_tutorial/demo.py), with 1.0.0's
three import paths. It reads its inputs from results_data/ in the working directory, as the tutorial does (the test
writes random stand-ins there), and prints every returned value as one JSON object.
"""
import json
import numpy as np
import fico_itr
from fico_itr import compute_similarity, instance_retrieval, category_retrieval
from fico_itr.similarity import compute_similarity as similarity_compute_similarity
from fico_itr.tasks import category_retrieval as tasks_category_retrieval, instance_retrieval as tasks_instance_retrieval
from fico_itr.tasks import instance_i2t, instance_t2i

out = {'version': fico_itr.__version__, 'file': fico_itr.__file__}

# README Quick Start (and tutorial case 1: BEiT-3 on Flickr30K, separate embeddings)
image_embeddings = np.load('results_data/beit3_f30k_img.npy')
text_embeddings = np.load('results_data/beit3_f30k_txt.npy')
labels = np.load('results_data/flickr30k-karpathy-test-labels.npy')
similarity_matrix = compute_similarity(image_embeddings, text_embeddings, measure='cosine')
i2t_instance_results, t2i_instance_results = instance_retrieval(similarity_matrix)
i2t_category_results, t2i_category_results = category_retrieval(similarity_matrix, labels)
out['quick_start'] = {'instance': [i2t_instance_results, t2i_instance_results],
                      'category': [i2t_category_results, t2i_category_results]}
out['similarity_matrix'] = similarity_matrix.tolist()

# README Usage 1: the standard case
out['usage_1'] = instance_retrieval(similarity_matrix)

# the other measures and 1.0.0's module paths
out['measures'] = {m: compute_similarity(image_embeddings, text_embeddings, measure=m).tolist()
                   for m in ('euclidean', 'inner_product')}
codes_img, codes_txt = np.load('results_data/adv(64bit)_f30k_img.npy'), np.load('results_data/adv(64bit)_f30k_txt.npy')
out['measures']['hamming'] = compute_similarity(codes_img, codes_txt, measure='hamming').tolist()
out['similarity_module'] = similarity_compute_similarity(image_embeddings, text_embeddings).tolist()
out['tasks'] = {'i2t': instance_i2t(similarity_matrix), 't2i': instance_t2i(similarity_matrix, captions_per_image=5),
                'instance': tasks_instance_retrieval(similarity_matrix, captions_per_image=5),
                'category': [tasks_category_retrieval(similarity_matrix, labels, k=k) for k in (1, 10, 100, None)]}

# README Usage 2 / tutorial case 4: non-uniform caption distribution (BEiT-3 on COCO)
img_embs = np.load('results_data/beit3_coco_img.npy')
txt_embs = np.load('results_data/beit3_coco_txt.npy')
coco_labels = np.load('results_data/coco-karpathy-testall-labels.npy')
similarity_matrix = compute_similarity(img_embs, txt_embs)
# (the README's Option A passes the np.load array itself: 1.0.0 fails on it under numpy 2, `array == 'auto'`)
caption_mapping = np.load('results_data/mscoco_test_indices.npy').tolist()
out['usage_2_list'] = instance_retrieval(similarity_matrix, captions_per_image=caption_mapping)
out['usage_2_category'] = category_retrieval(similarity_matrix, coco_labels, k=10, captions_per_image=caption_mapping)

# README Usage 3: square matrices (VSRN/UCCH duplicate each image once per caption)
img_embs = np.load('results_data/vsrn_f30k_img.npy')
txt_embs = np.load('results_data/vsrn_f30k_txt.npy')
similarity_matrix = compute_similarity(img_embs, txt_embs, measure='cosine')
out['usage_3'] = instance_retrieval(similarity_matrix, captions_per_image=5)
out['usage_3_category'] = category_retrieval(similarity_matrix, labels, captions_per_image=5)

# README Usage 4 / tutorial case 3 / demo.py: separate directional matrices (BLIP-2; LAVIS saves t2i as captions x images)
sim_i2t = np.load('results_data/blip2_f30k_sim_i2t.npy')
sim_t2i = np.load('results_data/blip2_f30k_sim_t2i.npy')
out['usage_4_tutorial'] = instance_retrieval(sim_i2t, sim_t2i)
out['usage_4_readme'] = instance_retrieval(sim_i2t, t2i_sim=sim_t2i.T, captions_per_image=5)
out['usage_4_category'] = category_retrieval(sim_i2t, labels, sim2=sim_t2i)

# tutorial case 2: a pre-computed similarity matrix (SCAN), and the complete evaluation's calls
similarity_matrix = np.load('results_data/scan_f30k_sim.npy')
out['case_2'] = instance_retrieval(similarity_matrix)
out['complete_scan'] = instance_retrieval(similarity_matrix, captions_per_image=5)
out['complete_blip2'] = instance_retrieval(sim_i2t, sim_t2i, captions_per_image=5)
out['complete_category'] = category_retrieval(similarity_matrix, labels)

# one class per image (1-D labels)
classes = np.load('results_data/f30k_classes.npy')
out['classes'] = category_retrieval(similarity_matrix, classes, k=50)

print(json.dumps(out, default=float))
